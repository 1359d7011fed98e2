"""split a series, correct identifiers

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision: actions on studies without an exception, and what undo needs."""
    with op.batch_alter_table("reconciliation_actions", schema=None) as batch_op:
        batch_op.alter_column("exception_pk", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("before_hold", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("opened_exception_pk", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("series_instance_uid", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("target_study_uid", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("is_new_target", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.create_index(
            batch_op.f("ix_reconciliation_actions_study_instance_uid"), ["study_instance_uid"]
        )
        batch_op.create_index(
            batch_op.f("ix_reconciliation_actions_target_study_uid"), ["target_study_uid"]
        )


def downgrade() -> None:
    """Revert this revision (actions without an exception are dropped: they cannot stay)."""
    op.execute("DELETE FROM reconciliation_actions WHERE exception_pk IS NULL")
    with op.batch_alter_table("reconciliation_actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reconciliation_actions_target_study_uid"))
        batch_op.drop_index(batch_op.f("ix_reconciliation_actions_study_instance_uid"))
        batch_op.drop_column("is_new_target")
        batch_op.drop_column("target_study_uid")
        batch_op.drop_column("series_instance_uid")
        batch_op.drop_column("opened_exception_pk")
        batch_op.drop_column("before_hold")
        batch_op.alter_column("exception_pk", existing_type=sa.Integer(), nullable=False)
