"""Alembic environment: runs migrations on the URL given in the configuration."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from pacsflow.adapters.db.tables import metadata

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
        context.run_migrations()
engine.dispose()
