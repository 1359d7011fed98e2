"""settings log

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29 20:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "settings_log",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_settings_log")),
    )
    with op.batch_alter_table("settings_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_settings_log_node"), ["node"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("settings_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_settings_log_node"))
    op.drop_table("settings_log")
