"""The exceptions queue in SQL: its exceptions, and the searches it needs (candidate orders
and patients, the day's history)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from pacsflow.adapters.db import tables as t
from pacsflow.adapters.db.statements import CHUNK
from pacsflow.adapters.db.study_rows import received_identity
from pacsflow.adapters.db.timestamps import aware
from pacsflow.domain.exception_queue import (
    ActionFact,
    ExceptionHistory,
    ExceptionRecord,
    HoldReason,
)
from pacsflow.domain.matching import ExceptionReason, MismatchSource, ReceivedIdentity
from pacsflow.domain.orders import AccessionNumber, OrderStatus
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier
from pacsflow.domain.uids import Uid


class SqlExceptionRepository:
    """The exceptions queue in SQL."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def _select(self) -> sa.Select[Any]:
        e = t.exceptions
        return sa.select(e, t.studies.c.study_instance_uid).join(
            t.studies, e.c.study_pk == t.studies.c.pk
        )

    def open_for(self, study_uid: Uid) -> ExceptionRecord | None:
        """The open exception of a study, if any."""
        row = self._c.execute(
            self._select().where(
                t.studies.c.study_instance_uid == study_uid, t.exceptions.c.resolved_at.is_(None)
            )
        ).first()
        return None if row is None else _exception(row)

    def add(
        self,
        study_uid: Uid,
        reason: ExceptionReason,
        source: MismatchSource,
        detail: str,
        received: ReceivedIdentity,
        candidate_order: AccessionNumber | None,
        at: datetime,
    ) -> int:
        """Open an exception; its id."""
        study_pk = self._c.execute(
            sa.select(t.studies.c.pk).where(t.studies.c.study_instance_uid == study_uid)
        ).scalar_one()
        hold = HoldReason(
            reason=reason,
            source=source,
            detail=detail,
            received=received,
            candidate_order=candidate_order,
        )
        return int(
            self._c.execute(
                sa.insert(t.exceptions)
                .values(study_pk=study_pk, opened_at=at, **_hold_columns(hold))
                .returning(t.exceptions.c.pk)
            ).scalar_one()
        )

    def open_explained_by(
        self, *, accession: str = "", study_uid: str = "", patient_ids: Sequence[str] = ()
    ) -> Sequence[ExceptionRecord]:
        """Open exceptions whose received accession, study UID or patient ID is one of these."""
        e = t.exceptions
        conds: list[sa.ColumnElement[bool]] = []
        if accession:
            conds.append(e.c.received_accession == accession)
        if study_uid:
            conds.append(t.studies.c.study_instance_uid == study_uid)
        if patient_ids:
            conds.append(e.c.received_patient_id.in_(list(patient_ids)))
        if not conds:
            return []
        rows = self._c.execute(
            self._select()
            .where(e.c.resolved_at.is_(None), sa.or_(*conds))
            .order_by(e.c.opened_at, e.c.pk)
        ).all()
        return [_exception(r) for r in rows]

    def resolve(self, exception_id: int, at: datetime, resolution: str) -> None:
        """Close an exception, saying how it was resolved."""
        self._c.execute(
            sa.update(t.exceptions)
            .where(t.exceptions.c.pk == exception_id)
            .values(resolved_at=at, resolution=resolution)
        )

    def get(self, exception_id: int) -> ExceptionRecord | None:
        """One exception, open or resolved."""
        row = self._c.execute(self._select().where(t.exceptions.c.pk == exception_id)).first()
        return None if row is None else _exception(row)

    def reopen(self, exception_id: int) -> None:
        """Open a resolved exception again (undo)."""
        self._c.execute(
            sa.update(t.exceptions)
            .where(t.exceptions.c.pk == exception_id)
            .values(resolved_at=None, resolution="")
        )

    def set_owner(self, exception_id: int, owner: str) -> None:
        """Name who works an exception (empty: nobody)."""
        self._c.execute(
            sa.update(t.exceptions).where(t.exceptions.c.pk == exception_id).values(owner=owner)
        )

    def rehold(self, exception_id: int, hold: HoldReason) -> None:
        """Say anew why an open exception holds its study."""
        self._c.execute(
            sa.update(t.exceptions)
            .where(t.exceptions.c.pk == exception_id)
            .values(**_hold_columns(hold))
        )

    def list_open(self, limit: int = 500) -> Sequence[ExceptionRecord]:
        """Open exceptions, oldest first."""
        rows = self._c.execute(
            self._select()
            .where(t.exceptions.c.resolved_at.is_(None))
            .order_by(t.exceptions.c.opened_at, t.exceptions.c.pk)
            .limit(limit)
        ).all()
        return [_exception(r) for r in rows]


def _hold_columns(hold: HoldReason) -> dict[str, Any]:
    """An exception's columns that say why it holds its study."""
    received = hold.received
    name = received.demographics.name
    return {
        "reason": hold.reason.value,
        "source": hold.source.value,
        "detail": hold.detail,
        "candidate_accession": hold.candidate_order,
        "received_patient_id": received.patient.value,
        "received_issuer": received.patient.issuer,
        "received_family_name": name.family,
        "received_given_name": name.given,
        "received_birth_date": received.demographics.birth_date,
        "received_sex": received.demographics.sex,
        "received_accession": received.accession_number,
    }


def _exception(row: sa.Row[Any]) -> ExceptionRecord:
    m = row._mapping
    resolved = m["resolved_at"]
    return ExceptionRecord(
        id=int(m["pk"]),
        study_instance_uid=Uid(m["study_instance_uid"]),
        reason=ExceptionReason(m["reason"]),
        source=MismatchSource(m["source"]),
        detail=m["detail"],
        opened_at=aware(m["opened_at"]),
        received=received_identity(m),
        candidate_order=AccessionNumber(m["candidate_accession"])
        if m["candidate_accession"]
        else None,
        resolved_at=aware(resolved) if resolved else None,
        resolution=m["resolution"],
        owner=m["owner"],
    )


class SqlExceptionIndex:
    """Candidate searches and exception histories in SQL."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def candidate_orders(
        self,
        *,
        accessions: Sequence[str] = (),
        patient_ids: Sequence[str] = (),
        scheduled_from: datetime | None = None,
        scheduled_to: datetime | None = None,
        limit: int = 100,
    ) -> Sequence[AccessionNumber]:
        """Orders not cancelled by accession number, patient ID, or scheduled window."""
        o = t.orders.c
        conds: list[sa.ColumnElement[bool]] = []
        if accessions:
            conds.append(o.accession_number.in_(list(accessions)[:CHUNK]))
        if patient_ids:
            conds.append(o.patient_id.in_(list(patient_ids)[:CHUNK]))
        if scheduled_from is not None and scheduled_to is not None:
            conds.append(o.scheduled_start.between(scheduled_from, scheduled_to))
        found: dict[str, None] = {}
        for cond in conds:
            rows = self._c.execute(
                sa.select(o.accession_number)
                .where(o.status != OrderStatus.CANCELLED.value, cond)
                .order_by(o.scheduled_start.desc(), o.pk.desc())
                .limit(limit)
            ).scalars()
            found.update(dict.fromkeys(rows))
        return [AccessionNumber(a) for a in found]

    def candidate_patients(
        self,
        *,
        identifiers: Sequence[str] = (),
        names: Sequence[str] = (),
        birth_dates: Sequence[date] = (),
        limit: int = 100,
    ) -> Sequence[PatientIdentifier]:
        """Primary identifiers of patients by identifier, both name components, or birth date."""
        p, ids = t.patients.c, t.patient_identifiers.c
        conds: list[sa.ColumnElement[bool]] = []
        if identifiers:
            lowered = sorted({i.lower() for i in identifiers})[:CHUNK]
            conds.append(
                p.pk.in_(sa.select(ids.patient_pk).where(sa.func.lower(ids.value).in_(lowered)))
            )
        lowered_names = sorted({n.lower() for n in names if n})
        if lowered_names:
            conds.append(
                sa.and_(
                    sa.func.lower(p.family_name).in_(lowered_names),
                    sa.func.lower(p.given_name).in_(lowered_names),
                )
            )
        if birth_dates:
            conds.append(p.birth_date.in_(list(birth_dates)[:CHUNK]))
        pks: dict[int, None] = {}
        for cond in conds:
            rows = self._c.execute(
                sa.select(p.pk).where(cond).order_by(p.pk.desc()).limit(limit)
            ).scalars()
            pks.update(dict.fromkeys(int(pk) for pk in rows))
        found: list[PatientIdentifier] = []
        for pk in pks:
            row = self._c.execute(
                sa.select(ids.value, ids.issuer)
                .where(ids.patient_pk == pk)
                .order_by(ids.position, ids.pk)
                .limit(1)
            ).first()
            if row is not None:
                found.append(PatientIdentifier(PatientId(row.value), Issuer(row.issuer)))
        return found

    def histories(self, start: datetime, end: datetime) -> Sequence[ExceptionHistory]:
        """Exceptions opened before end and not resolved for good before start, with their
        reconciliation actions before end.

        An exception resolved before start and never reopened since was resolved all day:
        only an undo reopens one, and an undo clears resolved_at.
        """
        e, a = t.exceptions.c, t.reconciliation_actions.c
        relevant = sa.and_(
            e.opened_at < end, sa.or_(e.resolved_at.is_(None), e.resolved_at >= start)
        )
        actions: dict[int, list[ActionFact]] = defaultdict(list)
        for row in self._c.execute(
            sa.select(a.exception_pk, a.action, a.at, a.undone_at)
            .join(t.exceptions, t.exceptions.c.pk == a.exception_pk)
            .where(relevant, a.at < end)
            .order_by(a.at, a.pk)
        ):
            actions[int(row.exception_pk)].append(
                ActionFact(
                    row.action, aware(row.at), aware(row.undone_at) if row.undone_at else None
                )
            )
        return [
            ExceptionHistory(
                id=int(row.pk),
                reason=ExceptionReason(row.reason),
                source=MismatchSource(row.source),
                opened_at=aware(row.opened_at),
                resolved_at=aware(row.resolved_at) if row.resolved_at else None,
                resolution=row.resolution,
                actions=tuple(actions.get(int(row.pk), ())),
            )
            for row in self._c.execute(
                sa.select(e.pk, e.reason, e.source, e.opened_at, e.resolved_at, e.resolution)
                .where(relevant)
                .order_by(e.opened_at, e.pk)
            )
        ]


__all__ = ["SqlExceptionIndex", "SqlExceptionRepository"]
