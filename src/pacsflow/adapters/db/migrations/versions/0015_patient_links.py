"""patient links (ADT A24/A37) and identifier changes (A47) in the merge history

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("patient_merges", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), server_default="merge", nullable=False)
        )
    op.create_table(
        "patient_links",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("patient_pk", sa.Integer(), nullable=False),
        sa.Column("linked_pk", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["linked_pk"], ["patients.pk"], name=op.f("fk_patient_links_linked_pk_patients")
        ),
        sa.ForeignKeyConstraint(
            ["patient_pk"], ["patients.pk"], name=op.f("fk_patient_links_patient_pk_patients")
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_patient_links")),
        sa.UniqueConstraint("patient_pk", "linked_pk", name="uq_patient_links_pair"),
    )
    op.create_index(
        op.f("ix_patient_links_linked_pk"), "patient_links", ["linked_pk"], unique=False
    )
    op.create_index(
        op.f("ix_patient_links_patient_pk"), "patient_links", ["patient_pk"], unique=False
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index(op.f("ix_patient_links_patient_pk"), table_name="patient_links")
    op.drop_index(op.f("ix_patient_links_linked_pk"), table_name="patient_links")
    op.drop_table("patient_links")
    with op.batch_alter_table("patient_merges", schema=None) as batch_op:
        batch_op.drop_column("kind")
