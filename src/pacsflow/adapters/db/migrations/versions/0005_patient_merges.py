"""patient merges

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "patient_merges",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("survivor_id", sa.String(length=64), nullable=False),
        sa.Column("survivor_issuer", sa.String(length=64), server_default="", nullable=False),
        sa.Column("merged_id", sa.String(length=64), nullable=False),
        sa.Column("merged_issuer", sa.String(length=64), server_default="", nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_patient_merges")),
    )
    op.create_index(
        op.f("ix_patient_merges_merged_id"), "patient_merges", ["merged_id"], unique=False
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index(op.f("ix_patient_merges_merged_id"), table_name="patient_merges")
    op.drop_table("patient_merges")
