"""exception ownership and targets

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision: exception owners (and the owner an action replaced, for undo)."""
    with op.batch_alter_table("exceptions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("owner", sa.String(length=64), server_default="", nullable=False)
        )
        # The daily report reads exceptions resolved from a given time on (or still open).
        batch_op.create_index(batch_op.f("ix_exceptions_resolved_at"), ["resolved_at"])
    with op.batch_alter_table("reconciliation_actions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("before_owner", sa.String(length=64), server_default="", nullable=False)
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("reconciliation_actions", schema=None) as batch_op:
        batch_op.drop_column("before_owner")
    with op.batch_alter_table("exceptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_exceptions_resolved_at"))
        batch_op.drop_column("owner")
