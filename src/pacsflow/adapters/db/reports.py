"""Report versions, their attachment to studies, and result deliveries, in SQL."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from pacsflow.adapters.db import tables as t
from pacsflow.adapters.db.timestamps import aware_or_none
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier
from pacsflow.domain.reports import (
    DeliveryState,
    DeliveryStats,
    Report,
    ReportRecord,
    ReportStatus,
    study_status,
)
from pacsflow.domain.uids import Uid

_R = t.reports
_D = t.result_deliveries


@functools.cache
def _unattached_for() -> sa.Select[Any]:
    """Built once, with the study's accession number looked up in it: asked per stored instance."""
    st = t.studies.c
    study_uid = sa.bindparam("study_uid", type_=st.study_instance_uid.type)
    accession = sa.select(st.accession_number).where(
        st.study_instance_uid == study_uid, st.accession_number != ""
    )
    return (
        sa.select(_R)
        .where(
            _R.c.attached_study_uid.is_(None),
            sa.or_(_R.c.study_instance_uid == study_uid, _R.c.accession_number.in_(accession)),
        )
        .order_by(_R.c.pk)
    )


def _record(row: sa.Row[Any]) -> ReportRecord:
    received = aware_or_none(row.received_at)
    assert received is not None
    return ReportRecord(
        id=row.pk,
        report=Report(
            accession_number=row.accession_number,
            status=ReportStatus(row.status),
            text=row.text,
            patient=PatientIdentifier(PatientId(row.patient_id), Issuer(row.issuer))
            if row.patient_id
            else None,
            study_instance_uid=row.study_instance_uid,
            radiologist=row.radiologist,
            observed_at=aware_or_none(row.observed_at),
            report_id=row.report_id,
        ),
        received_at=received,
        source=row.source,
        attached_study_uid=Uid(row.attached_study_uid) if row.attached_study_uid else None,
        flag=row.flag,
    )


class SqlReportStore:
    """Reports over one connection, inside the caller's transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def add(self, report: Report, received_at: datetime, source: str, flag: str = "") -> int:
        """Keep a report version; its id."""
        result = self._c.execute(
            sa.insert(_R).values(
                accession_number=report.accession_number,
                study_instance_uid=report.study_instance_uid,
                patient_id=report.patient.value if report.patient else "",
                issuer=report.patient.issuer if report.patient else "",
                status=report.status.value,
                text=report.text,
                radiologist=report.radiologist[:200],
                observed_at=report.observed_at.astimezone(UTC) if report.observed_at else None,
                report_id=report.report_id[:64],
                received_at=received_at.astimezone(UTC),
                source=source[:64],
                flag=flag[:200],
            )
        )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def get(self, report_id: int) -> ReportRecord | None:
        """One report version."""
        row = self._c.execute(sa.select(_R).where(_R.c.pk == report_id)).first()
        return _record(row) if row else None

    def attach(self, report_id: int, study_uid: Uid) -> None:
        """Attach a report version to its study (clears the flag)."""
        self._c.execute(
            sa.update(_R).where(_R.c.pk == report_id).values(attached_study_uid=study_uid, flag="")
        )

    def flag(self, report_id: int, reason: str) -> None:
        """Say why a report version is not attached."""
        self._c.execute(sa.update(_R).where(_R.c.pk == report_id).values(flag=reason[:200]))

    def unattached_for(self, study_uid: Uid) -> Sequence[ReportRecord]:
        """Unattached versions naming the study's accession number or Study Instance UID."""
        rows = self._c.execute(_unattached_for(), {"study_uid": study_uid})
        return [_record(r) for r in rows]

    def for_study(self, study_uid: Uid) -> Sequence[ReportRecord]:
        """The versions attached to a study, in arrival order."""
        rows = self._c.execute(
            sa.select(_R).where(_R.c.attached_study_uid == study_uid).order_by(_R.c.pk)
        )
        return [_record(r) for r in rows]

    def statuses(self, study_uids: Sequence[Uid]) -> dict[Uid, ReportStatus]:
        """The report status of each study (unread when it has no report)."""
        found: dict[Uid, list[ReportStatus]] = {uid: [] for uid in study_uids}
        for start in range(0, len(study_uids), 500):
            chunk = list(study_uids[start : start + 500])
            rows = self._c.execute(
                sa.select(_R.c.attached_study_uid, _R.c.status)
                .where(_R.c.attached_study_uid.in_(chunk))
                .order_by(_R.c.pk)
            )
            for uid, status in rows:
                found[Uid(uid)].append(ReportStatus(status))
        return {uid: study_status(versions) for uid, versions in found.items()}

    def list(self, *, unattached_only: bool = False, limit: int = 100) -> Sequence[ReportRecord]:
        """Report versions, newest first."""
        query = sa.select(_R).order_by(_R.c.pk.desc()).limit(limit)
        if unattached_only:
            query = query.where(_R.c.attached_study_uid.is_(None))
        return [_record(r) for r in self._c.execute(query)]

    def add_delivery(
        self, subscriber: str, event: str, study_uid: Uid, report_id: int | None, at: datetime
    ) -> int:
        """Record a result message queued for a subscriber; its id."""
        result = self._c.execute(
            sa.insert(_D).values(
                subscriber=subscriber,
                event=event,
                study_instance_uid=study_uid,
                report_pk=report_id,
                state=DeliveryState.QUEUED.value,
                queued_at=at.astimezone(UTC),
            )
        )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def settle_delivery(
        self, delivery_id: int, state: DeliveryState, at: datetime, ack_code: str, error: str
    ) -> None:
        """Record how the delivery ended."""
        self._c.execute(
            sa.update(_D)
            .where(_D.c.pk == delivery_id)
            .values(
                state=state.value,
                settled_at=at.astimezone(UTC),
                ack_code=ack_code[:4],
                error=error[:2000],
            )
        )

    def has_delivery(self, subscriber: str, event: str, study_uid: Uid) -> bool:
        """True when this event of this study was ever queued for the subscriber."""
        row = self._c.execute(
            sa.select(_D.c.pk)
            .where(
                _D.c.subscriber == subscriber,
                _D.c.event == event,
                _D.c.study_instance_uid == study_uid,
            )
            .limit(1)
        ).first()
        return row is not None

    def delivery_stats(self, subscriber: str, target_seconds: float) -> DeliveryStats:
        """Counts of one subscriber's deliveries."""
        rows = self._c.execute(
            sa.select(_D.c.state, _D.c.queued_at, _D.c.settled_at).where(
                _D.c.subscriber == subscriber
            )
        ).all()
        target = timedelta(seconds=target_seconds)
        delivered = in_time = failed = pending = 0
        for state, queued, settled in rows:
            if state == DeliveryState.DELIVERED.value:
                delivered += 1
                if settled is not None and aware_or_none(settled) - aware_or_none(queued) <= target:  # type: ignore[operator]
                    in_time += 1
            elif state == DeliveryState.FAILED.value:
                failed += 1
            else:
                pending += 1
        return DeliveryStats(subscriber, len(rows), delivered, in_time, failed, pending)


__all__ = ["SqlReportStore"]
