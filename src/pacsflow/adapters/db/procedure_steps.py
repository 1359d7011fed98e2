"""Performed procedure steps (MPPS) in SQL."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from pacsflow.adapters.db import tables as t
from pacsflow.adapters.db.statements import upsert
from pacsflow.domain.procedure_steps import PerformedStep
from pacsflow.domain.uids import Uid


class SqlProcedureStepRepository:
    """Performed procedure steps in SQL."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def get(self, sop_uid: Uid) -> PerformedStep | None:
        """One performed step."""
        row = self._c.execute(
            sa.select(t.procedure_steps).where(t.procedure_steps.c.sop_instance_uid == sop_uid)
        ).first()
        if row is None:
            return None
        return PerformedStep(
            sop_instance_uid=Uid(row.sop_instance_uid),
            status=row.status,
            accession_number=row.accession_number,
            study_instance_uid=row.study_instance_uid,
            performed_station_ae=row.performed_station_ae,
        )

    def add(self, step: PerformedStep, at: datetime) -> bool:
        """Record a new performed step; False when one with its SOP Instance UID exists."""
        if self.get(step.sop_instance_uid) is not None:
            return False
        try:
            with self._c.begin_nested():  # a concurrent N-CREATE of the same UID loses here
                self._c.execute(
                    sa.insert(t.procedure_steps).values(
                        sop_instance_uid=step.sop_instance_uid,
                        status=step.status,
                        accession_number=step.accession_number,
                        study_instance_uid=step.study_instance_uid,
                        performed_station_ae=step.performed_station_ae,
                        created_at=at,
                        updated_at=at,
                    )
                )
        except sa.exc.IntegrityError:
            return False
        return True

    def save(self, step: PerformedStep, at: datetime) -> None:
        """Insert or update a performed step."""
        values = {
            "status": step.status,
            "accession_number": step.accession_number,
            "study_instance_uid": step.study_instance_uid,
            "performed_station_ae": step.performed_station_ae,
            "updated_at": at,
        }
        upsert(
            self._c,
            t.procedure_steps,
            {"sop_instance_uid": step.sop_instance_uid},
            values,
            {**values, "created_at": at},
        )


__all__ = ["SqlProcedureStepRepository"]
