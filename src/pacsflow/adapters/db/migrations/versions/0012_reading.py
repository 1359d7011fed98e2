"""reading worklist claims and triage

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("triage_score", sa.Float(), nullable=True))
    op.create_table(
        "reading_claims",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("reader", sa.String(length=64), nullable=False),
        sa.Column("claimed_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_reading_claims")),
        sa.UniqueConstraint(
            "study_instance_uid", name=op.f("uq_reading_claims_study_instance_uid")
        ),
    )
    with op.batch_alter_table("reading_claims", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reading_claims_reader"), ["reader"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("reading_claims", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reading_claims_reader"))
    op.drop_table("reading_claims")
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("triage_score")
