"""Prefetch requests and the retrieval of each chosen prior, in SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from pacsflow.adapters.db import tables as t
from pacsflow.adapters.db.timestamps import aware_or_none
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier
from pacsflow.domain.prefetch import PriorRecord, PriorState
from pacsflow.domain.uids import Uid

_P = t.priors


def _record(row: sa.Row[Any]) -> PriorRecord:
    requested = aware_or_none(row.requested_at)
    assert requested is not None
    return PriorRecord(
        request_key=row.request_key,
        study_instance_uid=Uid(row.study_instance_uid),
        archive=row.archive,
        patient=PatientIdentifier(PatientId(row.patient_id), Issuer(row.issuer)),
        state=PriorState(row.state),
        requested_at=requested,
        study_date=row.study_date,
        modalities=tuple(m for m in row.modalities.split("\\") if m),
        description=row.description,
        completed_at=aware_or_none(row.completed_at),
        instances=row.instances,
        last_error=row.last_error,
    )


class SqlPrefetchStore:
    """Chosen priors over one connection, inside the caller's transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def add(self, record: PriorRecord) -> bool:
        """Record a chosen prior; False when this request already has this study."""
        exists = self._c.execute(
            sa.select(_P.c.pk).where(
                _P.c.request_key == record.request_key,
                _P.c.study_instance_uid == record.study_instance_uid,
            )
        ).first()
        if exists:
            return False
        self._c.execute(
            sa.insert(_P).values(
                request_key=record.request_key,
                study_instance_uid=record.study_instance_uid,
                archive=record.archive,
                patient_id=record.patient.value,
                issuer=record.patient.issuer,
                state=record.state.value,
                study_date=record.study_date,
                modalities="\\".join(record.modalities)[:200],
                description=record.description[:200],
                requested_at=record.requested_at.astimezone(UTC),
                completed_at=record.completed_at.astimezone(UTC) if record.completed_at else None,
                instances=record.instances,
            )
        )
        return True

    def expected_patient(self, study_uid: Uid) -> PatientIdentifier | None:
        """The patient a study is being fetched for."""
        row = self._c.execute(
            sa.select(_P.c.patient_id, _P.c.issuer)
            .where(_P.c.study_instance_uid == study_uid, _P.c.state != PriorState.LOCAL.value)
            .order_by(_P.c.pk.desc())
            .limit(1)
        ).first()
        return PatientIdentifier(PatientId(row.patient_id), Issuer(row.issuer)) if row else None

    def update(
        self,
        request_key: str,
        study_uid: Uid,
        state: PriorState,
        at: datetime,
        *,
        instances: int = 0,
        error: str = "",
    ) -> None:
        """Record progress of one prior's retrieval."""
        values: dict[str, Any] = {"state": state.value, "last_error": error}
        if state is PriorState.DONE:
            values["completed_at"] = at.astimezone(UTC)
            values["instances"] = instances
        self._c.execute(
            sa.update(_P)
            .where(_P.c.request_key == request_key, _P.c.study_instance_uid == study_uid)
            .values(**values)
        )

    def list(self, request_key: str | None = None, limit: int = 500) -> Sequence[PriorRecord]:
        """Chosen priors, newest request first."""
        query = sa.select(_P).order_by(_P.c.pk.desc()).limit(limit)
        if request_key is not None:
            query = query.where(_P.c.request_key == request_key)
        return [_record(r) for r in self._c.execute(query)]


__all__ = ["SqlPrefetchStore"]
