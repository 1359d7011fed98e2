"""instance rejection (IOCM)

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rejection_note", sa.String(length=16), nullable=True))
    op.create_table(
        "rejections",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), server_default="", nullable=False),
        sa.Column("series_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("rejected_at", _TS, nullable=False),
        sa.Column("rejected_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_rejections")),
        sa.UniqueConstraint("sop_instance_uid", name=op.f("uq_rejections_sop_instance_uid")),
    )
    with op.batch_alter_table("rejections", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_rejections_study_instance_uid"), ["study_instance_uid"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_rejections_rejected_by"), ["rejected_by"], unique=False
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("rejections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rejections_rejected_by"))
        batch_op.drop_index(batch_op.f("ix_rejections_study_instance_uid"))
    op.drop_table("rejections")
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_column("rejection_note")
