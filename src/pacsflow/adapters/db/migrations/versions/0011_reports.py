"""reports and result deliveries

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "reports",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("accession_number", sa.String(length=64), server_default="", nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), server_default="", nullable=False),
        sa.Column("attached_study_uid", sa.String(length=64), nullable=True),
        sa.Column("patient_id", sa.String(length=64), server_default="", nullable=False),
        sa.Column("issuer", sa.String(length=64), server_default="", nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), server_default="", nullable=False),
        sa.Column("radiologist", sa.String(length=200), server_default="", nullable=False),
        sa.Column("observed_at", _TS, nullable=True),
        sa.Column("report_id", sa.String(length=64), server_default="", nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        sa.Column("source", sa.String(length=64), server_default="", nullable=False),
        sa.Column("flag", sa.String(length=200), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_reports")),
    )
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reports_accession_number"), ["accession_number"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_reports_study_instance_uid"), ["study_instance_uid"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_reports_attached_study_uid"), ["attached_study_uid"], unique=False
        )
    op.create_table(
        "result_deliveries",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("subscriber", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("report_pk", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("queued_at", _TS, nullable=False),
        sa.Column("settled_at", _TS, nullable=True),
        sa.Column("ack_code", sa.String(length=4), server_default="", nullable=False),
        sa.Column("error", sa.Text(), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_result_deliveries")),
    )
    with op.batch_alter_table("result_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_result_deliveries_subscriber"), ["subscriber"], unique=False
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("result_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_result_deliveries_subscriber"))
    op.drop_table("result_deliveries")
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reports_attached_study_uid"))
        batch_op.drop_index(batch_op.f("ix_reports_study_instance_uid"))
        batch_op.drop_index(batch_op.f("ix_reports_accession_number"))
    op.drop_table("reports")
