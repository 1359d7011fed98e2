"""IOCM rejection notes: hide the instances a note rejects, in the transaction that stores it.

IHE RAD TF IOCM (Imaging Object Change Management): a modality or PACS sends a Key Object
Selection Document titled with a rejection reason; the Image Manager keeps the rejected
instances but no longer shows or sends them, and refuses them when they are sent again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pacsflow.domain.audit import Action, ActiveParticipant, AuditEvent, AuditSource
from pacsflow.domain.audit_events import instances_accessed, study_object
from pacsflow.domain.errors import InstanceRejected
from pacsflow.domain.patients import PatientIdentifier
from pacsflow.domain.rejections import Rejection, RejectionRecord
from pacsflow.domain.uids import Uid
from pacsflow.workflow.ports.uow import UnitOfWork

log = logging.getLogger(__name__)

#: How an exception is closed when a rejection leaves its study with nothing to reconcile.
RESOLVED_BY_REJECTION = "iocm_rejection"


@dataclass(frozen=True, slots=True)
class Applied:
    """What a rejection note changed: studies emptied by it, exceptions it closed."""

    hidden_in: frozenset[Uid]
    emptied: tuple[Uid, ...]
    closed_exceptions: tuple[int, ...]


def refuse_if_rejected(found: RejectionRecord | None) -> None:
    """Raise InstanceRejected when a rejection note rejected the instance (found is how)."""
    if found is not None:
        raise InstanceRejected(
            f"instance {found.sop_instance_uid} was rejected "
            f"({found.reason.value} {found.reason.meaning}) by rejection note {found.rejected_by}"
        )


def apply_rejection(uow: UnitOfWork, rejection: Rejection, now: datetime) -> Applied:
    """Hide what the note rejects; close the exception of a study it leaves with nothing visible.

    A study whose every instance is rejected has nothing left to reconcile, whatever the
    reason (for 113038 "Incorrect Modality Worklist Entry" it was acquired against the wrong
    order), so its open exception is resolved; its next new instance matches it afresh.
    """
    hidden_in = uow.studies.reject(rejection, now)
    emptied: list[Uid] = []
    closed: list[int] = []
    for uid in sorted(hidden_in):
        study = uow.studies.get(uid)
        if study is None or study.instance_count:
            continue
        emptied.append(uid)
        open_now = uow.exceptions.open_for(uid)
        if open_now is not None:
            uow.exceptions.resolve(open_now.id, now, RESOLVED_BY_REJECTION)
            closed.append(open_now.id)
    log.info(
        "rejection note %s (%s): %d instance(s) named, %d study(ies) emptied",
        rejection.note,
        rejection.reason.value,
        len(rejection.instances),
        len(emptied),
    )
    return Applied(hidden_in, tuple(emptied), tuple(closed))


def rejection_event(
    uow: UnitOfWork,
    source: AuditSource,
    requestor: ActiveParticipant,
    rejection: Rejection,
    at: datetime,
) -> AuditEvent:
    """The rejection as an audit event: DICOM Instances Accessed (110103), action Delete.

    As dcm4chee-arc audits a stored rejection note (RAD-66): the rejected studies and their
    patients are the participant objects, the reason's meaning the outcome description.
    """
    patients: list[PatientIdentifier] = []
    studies = []
    for uid in rejection.study_uids:
        study = uow.studies.get(uid)
        accessions: Sequence[str] = (study.accession_number,) if study else ()
        studies.append(study_object(uid, accessions))
        if study is not None:
            patient = study.patient or study.received.patient
            if patient not in patients:
                patients.append(patient)
    return instances_accessed(
        source,
        requestor,
        at,
        action=Action.DELETE,
        patients=patients,
        studies=studies,
        description=(
            f"{rejection.reason.meaning} ({rejection.reason.value}): "
            f"{len(rejection.instances)} instance(s), rejection note {rejection.note}"
        ),
    )


__all__ = [
    "RESOLVED_BY_REJECTION",
    "Applied",
    "apply_rejection",
    "refuse_if_rejected",
    "rejection_event",
]
