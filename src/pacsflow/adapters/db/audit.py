"""The audit trail in SQL: append-only records, a patient index and a one-row chain head.

Appending reads the chain head and writes the record in one transaction. On PostgreSQL the
head row is read `FOR UPDATE`, so concurrent appenders queue on that row lock until the
holder commits; on SQLite every write transaction begins IMMEDIATE (see engine.py), which
serializes writers the same way. Either way the head update is also conditional on the id
it read, and record ids are primary keys: a lost race fails loudly, the chain never forks.
The head lock is held until commit, so append as the last step before committing.

Triggers (created by migration 0002, and by `create_all` for tests) reject UPDATE and
DELETE on the records and any head change other than advancing by one. They stop mistakes
and casual edits; someone able to drop them is caught by `pacsflow audit verify`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from pacsflow.adapters.db.tables import metadata
from pacsflow.adapters.db.timestamps import aware, utc
from pacsflow.domain.audit import AuditEvent
from pacsflow.domain.audit_chain import (
    GENESIS_HASH,
    AuditChainBroken,
    AuditIndex,
    AuditRecord,
    ChainHead,
    canonical,
    chain_hash,
    index_of,
)
from pacsflow.domain.errors import TransientError
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier
from pacsflow.workflow.audit import VerifyReport, verify_trail
from pacsflow.workflow.ports.audit import AuditSessionFactory

_TS = sa.DateTime(timezone=True)

audit_records = sa.Table(
    "audit_records",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("recorded_at", _TS, nullable=False),
    sa.Column("event_time", _TS, nullable=False, index=True),
    sa.Column("event_id", sa.String(16), nullable=False, index=True),
    sa.Column("action", sa.String(1), nullable=False),
    sa.Column("outcome", sa.SmallInteger, nullable=False),
    sa.Column("user_id", sa.Text, nullable=False, index=True),
    sa.Column("canonical", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

audit_patients = sa.Table(
    "audit_patients",
    metadata,
    sa.Column("record_id", sa.ForeignKey("audit_records.id"), primary_key=True),
    sa.Column("patient_id", sa.Text, primary_key=True),
    sa.Column("issuer", sa.Text, primary_key=True),
    sa.Index("ix_audit_patients_patient_id", "patient_id"),
)

audit_chain_head = sa.Table(
    "audit_chain_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("last_id", sa.Integer, nullable=False),
    sa.Column("last_hash", sa.String(64), nullable=False),
    sa.CheckConstraint("id = 1", name="ck_audit_chain_head_single_row"),
)

# The same guards migration 0002 installs, for schemas made with metadata.create_all().
_PG_REJECT = """CREATE OR REPLACE FUNCTION pacsflow_audit_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP;
END $$"""
_PG_ADVANCE = """CREATE OR REPLACE FUNCTION pacsflow_audit_head_advance() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' OR NEW.id <> OLD.id OR NEW.last_id <> OLD.last_id + 1 THEN
        RAISE EXCEPTION 'audit_chain_head only advances by one (% refused)', TG_OP;
    END IF;
    RETURN NEW;
END $$"""


def _guards(table: str, dialect: str) -> tuple[str, ...]:
    """The statements that make one audit table append-only on a dialect."""
    if dialect == "sqlite":
        if table == "audit_chain_head":
            return (
                "CREATE TRIGGER audit_chain_head_advance BEFORE UPDATE ON audit_chain_head "
                "WHEN NEW.id <> OLD.id OR NEW.last_id <> OLD.last_id + 1 "
                "BEGIN SELECT RAISE(ABORT, 'audit_chain_head only advances by one'); END",
                "CREATE TRIGGER audit_chain_head_no_delete BEFORE DELETE ON audit_chain_head "
                "BEGIN SELECT RAISE(ABORT, 'audit_chain_head cannot be deleted'); END",
            )
        return tuple(
            f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            for op in ("UPDATE", "DELETE")
        )
    if dialect == "postgresql":
        truncate = (
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION pacsflow_audit_reject_change()"
        )
        if table == "audit_chain_head":
            row = (
                "CREATE TRIGGER audit_chain_head_advance BEFORE UPDATE OR DELETE "
                "ON audit_chain_head FOR EACH ROW EXECUTE FUNCTION pacsflow_audit_head_advance()"
            )
        else:
            row = (
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION pacsflow_audit_reject_change()"
            )
        return (_PG_REJECT, _PG_ADVANCE, row, truncate)
    return ()


def _after_create(target: sa.Table, connection: sa.Connection, **_: object) -> None:
    if target is audit_chain_head:
        connection.execute(
            audit_chain_head.insert().values(id=1, last_id=0, last_hash=GENESIS_HASH)
        )
    for statement in _guards(target.name, connection.dialect.name):
        # text(), not exec_driver_sql: the driver would read PL/pgSQL's '%' as placeholders.
        connection.execute(sa.text(statement))


for _table in (audit_records, audit_patients, audit_chain_head):
    sa.event.listen(_table, "after_create", _after_create)


class SqlAuditLog:
    """The audit log over one connection, inside the caller's transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def _locked_head(self) -> ChainHead:
        h = audit_chain_head
        row = self._c.execute(
            sa.select(h.c.last_id, h.c.last_hash).where(h.c.id == 1).with_for_update()
        ).first()
        if row is None:
            raise AuditChainBroken("the audit chain head is missing; run `pacsflow db upgrade`")
        return ChainHead(int(row.last_id), str(row.last_hash))

    def append(self, event: AuditEvent, at: datetime) -> int:
        """Chain and store an event in the current transaction; its record id."""
        body = canonical(event)
        index = index_of(event)
        try:
            head = self._locked_head()
            record_id = head.last_id + 1
            digest = chain_hash(head.last_hash, body)
            self._c.execute(
                audit_records.insert().values(
                    id=record_id,
                    recorded_at=utc(at),
                    event_time=utc(index.event_time),
                    event_id=index.event_id,
                    action=index.action,
                    outcome=index.outcome,
                    user_id=index.user_id,
                    canonical=body.decode("utf-8"),
                    prev_hash=head.last_hash,
                    hash=digest,
                )
            )
            if index.patients:
                self._c.execute(
                    audit_patients.insert(),
                    [
                        {"record_id": record_id, "patient_id": p.value, "issuer": p.issuer}
                        for p in index.patients
                    ],
                )
            moved = self._c.execute(
                audit_chain_head.update()
                .where(audit_chain_head.c.id == 1, audit_chain_head.c.last_id == head.last_id)
                .values(last_id=record_id, last_hash=digest)
            )
        except (sa.exc.OperationalError, sa.exc.IntegrityError) as exc:
            raise TransientError(f"audit record not stored: {exc.orig}") from exc
        if moved.rowcount != 1:
            raise TransientError("audit chain moved under a concurrent append; retry")
        return record_id

    def head(self) -> ChainHead:
        """The last record appended, as the chain head says."""
        h = audit_chain_head
        try:
            row = self._c.execute(sa.select(h.c.last_id, h.c.last_hash).where(h.c.id == 1)).first()
        except sa.exc.OperationalError as exc:
            raise TransientError(f"audit trail unreadable: {exc.orig}") from exc
        if row is None:
            raise AuditChainBroken("the audit chain head is missing")
        return ChainHead(int(row.last_id), str(row.last_hash))

    def search(
        self,
        *,
        patient_id: str | None = None,
        user: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> Sequence[AuditRecord]:
        """Records matching every filter given (event time in [since, until)), newest first."""
        r = audit_records
        stmt = sa.select(r).order_by(r.c.id.desc()).limit(max(0, limit))
        if patient_id is not None:
            p = audit_patients
            stmt = stmt.where(
                sa.exists().where(p.c.record_id == r.c.id, p.c.patient_id == patient_id)
            )
        if user is not None:
            stmt = stmt.where(r.c.user_id == user)
        if since is not None:
            stmt = stmt.where(r.c.event_time >= utc(since))
        if until is not None:
            stmt = stmt.where(r.c.event_time < utc(until))
        return self._load(stmt)

    def records(self, *, after: int = 0, up_to: int, limit: int = 1000) -> Sequence[AuditRecord]:
        """Records with after < id <= up_to, in chain order, at most limit of them."""
        r = audit_records
        stmt = (
            sa.select(r)
            .where(r.c.id > after, r.c.id <= up_to)
            .order_by(r.c.id)
            .limit(max(0, limit))
        )
        return self._load(stmt)

    def _load(self, stmt: sa.Select[Any]) -> list[AuditRecord]:
        try:
            rows = self._c.execute(stmt).all()
            ids = [int(row.id) for row in rows]
            patients: dict[int, list[PatientIdentifier]] = {i: [] for i in ids}
            if ids:
                p = audit_patients
                for rid, value, issuer in self._c.execute(
                    sa.select(p.c.record_id, p.c.patient_id, p.c.issuer).where(
                        p.c.record_id.in_(ids)
                    )
                ):
                    patients[int(rid)].append(PatientIdentifier(PatientId(value), Issuer(issuer)))
        except sa.exc.OperationalError as exc:
            raise TransientError(f"audit trail unreadable: {exc.orig}") from exc
        return [
            AuditRecord(
                id=int(row.id),
                recorded_at=aware(row.recorded_at),
                canonical=str(row.canonical).encode("utf-8"),
                prev_hash=str(row.prev_hash),
                hash=str(row.hash),
                index=AuditIndex(
                    event_id=str(row.event_id),
                    action=str(row.action),
                    outcome=int(row.outcome),
                    event_time=aware(row.event_time),
                    user_id=str(row.user_id),
                    patients=tuple(
                        sorted(patients[int(row.id)], key=lambda i: (i.value, i.issuer))
                    ),
                ),
            )
            for row in rows
        ]


def run_verify(sessions: AuditSessionFactory) -> tuple[int, str]:
    """Verify the audit chain; an exit code (0 intact, 1 broken, 2 unreadable) and a message."""
    try:
        report: VerifyReport = verify_trail(sessions)
    except (TransientError, AuditChainBroken) as exc:
        return 2, f"audit trail could not be read: {exc}"
    if report.is_intact:
        return 0, (
            f"audit trail intact: {report.count} records, "
            f"head {report.head.last_id} {report.head.last_hash}"
        )
    more = len(report.breaks) - 1
    also = f" ({more} more break{'s' if more != 1 else ''})" if more > 0 else ""
    return 1, f"audit trail BROKEN at record {report.first_broken}: {report.reason}{also}"


__all__ = [
    "SqlAuditLog",
    "audit_chain_head",
    "audit_patients",
    "audit_records",
    "run_verify",
]
