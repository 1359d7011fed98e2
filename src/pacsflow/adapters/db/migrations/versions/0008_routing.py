"""routing rule versions, activations and forwards

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 20:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "routing_versions",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=64), nullable=False),
        sa.Column("comment", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_routing_versions")),
    )
    op.create_table(
        "routing_activations",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["version"],
            ["routing_versions.version"],
            name=op.f("fk_routing_activations_version_routing_versions"),
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_routing_activations")),
    )
    op.create_table(
        "forwards",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("destination", sa.String(length=64), nullable=False),
        sa.Column("blob_key", sa.String(length=300), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("rule_version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("queued_at", _TS, nullable=False),
        sa.Column("sent_at", _TS, nullable=True),
        sa.Column("last_error", sa.Text(), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_forwards")),
        sa.UniqueConstraint(
            "sop_instance_uid",
            "destination",
            "blob_key",
            name="uq_forwards_instance_destination",
        ),
    )
    with op.batch_alter_table("forwards", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_forwards_study_instance_uid"), ["study_instance_uid"], unique=False
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("forwards", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_forwards_study_instance_uid"))
    op.drop_table("forwards")
    op.drop_table("routing_activations")
    op.drop_table("routing_versions")
