"""SQL storage: tables, repositories, the unit of work and migrations."""

from pacsflow.adapters.db.engine import make_engine
from pacsflow.adapters.db.migrate import is_current, upgrade
from pacsflow.adapters.db.uow import SqlUnitOfWork, SqlUnitOfWorkFactory

__all__ = ["SqlUnitOfWork", "SqlUnitOfWorkFactory", "is_current", "make_engine", "upgrade"]
