"""reconciliation actions

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 05:03:14.538211
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "reconciliation_actions",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("exception_pk", sa.Integer(), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.Text(), server_default="", nullable=False),
        sa.Column("before_state", sa.String(length=16), nullable=False),
        sa.Column("before_patient_id", sa.String(length=64), nullable=True),
        sa.Column("before_issuer", sa.String(length=64), nullable=True),
        sa.Column("before_accession", sa.String(length=64), server_default="", nullable=False),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["exception_pk"],
            ["exceptions.pk"],
            name=op.f("fk_reconciliation_actions_exception_pk_exceptions"),
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_reconciliation_actions")),
    )
    with op.batch_alter_table("reconciliation_actions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reconciliation_actions_exception_pk"), ["exception_pk"], unique=False
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("reconciliation_actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reconciliation_actions_exception_pk"))

    op.drop_table("reconciliation_actions")
