"""audit trail: append-only hash-chained records, patient index, chain head

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_GENESIS = "0" * 64

_SQLITE_GUARDS = (
    "CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records "
    "BEGIN SELECT RAISE(ABORT, 'audit_records is append-only'); END",
    "CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records "
    "BEGIN SELECT RAISE(ABORT, 'audit_records is append-only'); END",
    "CREATE TRIGGER audit_patients_no_update BEFORE UPDATE ON audit_patients "
    "BEGIN SELECT RAISE(ABORT, 'audit_patients is append-only'); END",
    "CREATE TRIGGER audit_patients_no_delete BEFORE DELETE ON audit_patients "
    "BEGIN SELECT RAISE(ABORT, 'audit_patients is append-only'); END",
    "CREATE TRIGGER audit_chain_head_advance BEFORE UPDATE ON audit_chain_head "
    "WHEN NEW.id <> OLD.id OR NEW.last_id <> OLD.last_id + 1 "
    "BEGIN SELECT RAISE(ABORT, 'audit_chain_head only advances by one'); END",
    "CREATE TRIGGER audit_chain_head_no_delete BEFORE DELETE ON audit_chain_head "
    "BEGIN SELECT RAISE(ABORT, 'audit_chain_head cannot be deleted'); END",
)

_PG_GUARDS = (
    """CREATE OR REPLACE FUNCTION pacsflow_audit_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP;
END $$""",
    """CREATE OR REPLACE FUNCTION pacsflow_audit_head_advance() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' OR NEW.id <> OLD.id OR NEW.last_id <> OLD.last_id + 1 THEN
        RAISE EXCEPTION 'audit_chain_head only advances by one (% refused)', TG_OP;
    END IF;
    RETURN NEW;
END $$""",
    "CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records "
    "FOR EACH ROW EXECUTE FUNCTION pacsflow_audit_reject_change()",
    "CREATE TRIGGER audit_patients_append_only BEFORE UPDATE OR DELETE ON audit_patients "
    "FOR EACH ROW EXECUTE FUNCTION pacsflow_audit_reject_change()",
    "CREATE TRIGGER audit_chain_head_advance BEFORE UPDATE OR DELETE ON audit_chain_head "
    "FOR EACH ROW EXECUTE FUNCTION pacsflow_audit_head_advance()",
    "CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records "
    "FOR EACH STATEMENT EXECUTE FUNCTION pacsflow_audit_reject_change()",
    "CREATE TRIGGER audit_patients_no_truncate BEFORE TRUNCATE ON audit_patients "
    "FOR EACH STATEMENT EXECUTE FUNCTION pacsflow_audit_reject_change()",
    "CREATE TRIGGER audit_chain_head_no_truncate BEFORE TRUNCATE ON audit_chain_head "
    "FOR EACH STATEMENT EXECUTE FUNCTION pacsflow_audit_reject_change()",
)


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "audit_records",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=1), nullable=False),
        sa.Column("outcome", sa.SmallInteger(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("canonical", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_records")),
    )
    op.create_index(op.f("ix_audit_records_event_time"), "audit_records", ["event_time"])
    op.create_index(op.f("ix_audit_records_event_id"), "audit_records", ["event_id"])
    op.create_index(op.f("ix_audit_records_user_id"), "audit_records", ["user_id"])
    op.create_table(
        "audit_patients",
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Text(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["audit_records.id"],
            name=op.f("fk_audit_patients_record_id_audit_records"),
        ),
        sa.PrimaryKeyConstraint(
            "record_id", "patient_id", "issuer", name=op.f("pk_audit_patients")
        ),
    )
    op.create_index("ix_audit_patients_patient_id", "audit_patients", ["patient_id"])
    head = op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_id", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_audit_chain_head_single_row"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_head")),
    )
    assert head is not None
    op.bulk_insert(head, [{"id": 1, "last_id": 0, "last_hash": _GENESIS}])
    dialect = op.get_bind().dialect.name
    guards = {"sqlite": _SQLITE_GUARDS, "postgresql": _PG_GUARDS}.get(dialect, ())
    for statement in guards:
        op.execute(statement)


def downgrade() -> None:
    """Revert this revision (drops the audit trail: export it first)."""
    op.drop_table("audit_chain_head")
    op.drop_index("ix_audit_patients_patient_id", table_name="audit_patients")
    op.drop_table("audit_patients")
    op.drop_index(op.f("ix_audit_records_user_id"), table_name="audit_records")
    op.drop_index(op.f("ix_audit_records_event_id"), table_name="audit_records")
    op.drop_index(op.f("ix_audit_records_event_time"), table_name="audit_records")
    op.drop_table("audit_records")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS pacsflow_audit_head_advance()")
        op.execute("DROP FUNCTION IF EXISTS pacsflow_audit_reject_change()")
