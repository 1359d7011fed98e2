"""Reconciliation actions as recorded, with what was before (for undo)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pacsflow.domain.exception_queue import HoldReason
from pacsflow.domain.patients import PatientIdentifier
from pacsflow.domain.studies import StudyState
from pacsflow.domain.uids import Uid


@dataclass(frozen=True, slots=True)
class ReconciliationAction:
    """What a person did to a study or its exception, with what was before (for undo).

    exception_id is the exception acted on (None for a study without an open exception);
    opened_exception_id one the action opened. A split names the series it moved, the study
    it moved it to, and whether it created that study.
    """

    id: int
    exception_id: int | None
    study_instance_uid: Uid
    action: str
    actor: str
    at: datetime
    detail: str
    before_state: StudyState
    before_patient: PatientIdentifier | None
    before_accession: str
    undone_at: datetime | None = None
    before_owner: str = ""
    before_hold: HoldReason | None = None
    opened_exception_id: int | None = None
    series_instance_uid: Uid | None = None
    target_study_uid: Uid | None = None
    is_new_target: bool = False


__all__ = [
    "ReconciliationAction",
]
