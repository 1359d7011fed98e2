"""Alembic environment: runs migrations on the URL given in the configuration."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from pacsflow.adapters.db.tables import metadata

#: The PostgreSQL advisory lock key that serialises migrations ("pacsfw" in ASCII).
_MIGRATION_LOCK = 0x706163736677

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "sqlalchemy.url must be set"
engine = sa.create_engine(url)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Nodes started together on one empty database would each create the tables and
            # all but one fail; this lock makes them migrate in turn (the later ones find the
            # schema current). It is released when the migration transaction ends.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        context.run_migrations()
engine.dispose()
