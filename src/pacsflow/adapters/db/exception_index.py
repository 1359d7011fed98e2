"""SQL searches for the exceptions queue: candidate orders and patients, the day's history."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime

import sqlalchemy as sa

from pacsflow.adapters.db import tables as t
from pacsflow.adapters.db.timestamps import aware
from pacsflow.domain.exception_queue import ActionFact, ExceptionHistory
from pacsflow.domain.matching import ExceptionReason, MismatchSource
from pacsflow.domain.orders import AccessionNumber, OrderStatus
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier

#: Bound parameters per IN (...) list: well under every backend's limit.
_CHUNK = 500


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
            conds.append(o.accession_number.in_(list(accessions)[:_CHUNK]))
        if patient_ids:
            conds.append(o.patient_id.in_(list(patient_ids)[:_CHUNK]))
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
            lowered = sorted({i.lower() for i in identifiers})[:_CHUNK]
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
            conds.append(p.birth_date.in_(list(birth_dates)[:_CHUNK]))
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


__all__ = ["SqlExceptionIndex"]
