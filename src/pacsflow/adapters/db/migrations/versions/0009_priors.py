"""prefetched priors

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 19:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "priors",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("request_key", sa.String(length=200), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("archive", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("issuer", sa.String(length=64), server_default="", nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("study_date", sa.Date(), nullable=True),
        sa.Column("modalities", sa.String(length=200), server_default="", nullable=False),
        sa.Column("description", sa.String(length=200), server_default="", nullable=False),
        sa.Column("requested_at", _TS, nullable=False),
        sa.Column("completed_at", _TS, nullable=True),
        sa.Column("instances", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_priors")),
        sa.UniqueConstraint("request_key", "study_instance_uid", name="uq_priors_request_study"),
    )
    with op.batch_alter_table("priors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_priors_request_key"), ["request_key"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_priors_study_instance_uid"), ["study_instance_uid"], unique=False
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("priors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_priors_study_instance_uid"))
        batch_op.drop_index(batch_op.f("ix_priors_request_key"))
    op.drop_table("priors")
