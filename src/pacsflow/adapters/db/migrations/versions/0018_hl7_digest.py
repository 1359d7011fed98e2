"""hl7 journal: content digest and reused control id

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision: tell a retransmission from another message reusing its control id.

    Entries journaled before have no digest and are still matched by control id alone.
    """
    with op.batch_alter_table("hl7_messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("digest", sa.String(length=64), server_default="", nullable=False)
        )
        batch_op.add_column(sa.Column("reuses_pk", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("hl7_messages", schema=None) as batch_op:
        batch_op.drop_column("reuses_pk")
        batch_op.drop_column("digest")
