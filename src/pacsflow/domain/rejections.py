"""Rejected instances: the IHE IOCM reasons and what a rejection note names.

A rejection hides instances from every clinical use (queries, retrieval, counts, routing)
but keeps them, with the reason, the time and the note that rejected them. The four
reasons are the IOCM rejection note titles (IHE RAD TF-3 IOCM; the rejection codes of the Key
Object Selection Document Title, PS3.16 CID 7010, scheme DCM);
"Data Retention Policy Expired" additionally marks the instances for deletion.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from pacsflow.domain.uids import Uid


class RejectionReason(enum.StrEnum):
    """Why instances were rejected (the document title code of the rejection note)."""

    QUALITY = "113001"
    PATIENT_SAFETY = "113037"
    INCORRECT_WORKLIST_ENTRY = "113038"
    RETENTION_EXPIRED = "113039"

    @property
    def meaning(self) -> str:
        """The code meaning, as the standard spells it."""
        return _MEANINGS[self]

    @property
    def is_deletion_requested(self) -> bool:
        """True when the instances are not only hidden but due for deletion."""
        return self is RejectionReason.RETENTION_EXPIRED


_MEANINGS: Final = {
    RejectionReason.QUALITY: "Rejected for Quality Reasons",
    RejectionReason.PATIENT_SAFETY: "Rejected for Patient Safety Reasons",
    RejectionReason.INCORRECT_WORKLIST_ENTRY: "Incorrect Modality Worklist Entry",
    RejectionReason.RETENTION_EXPIRED: "Data Retention Policy Expired",
}

#: The coding scheme of the reason codes.
REASON_SCHEME: Final = "DCM"


def reason_for(code: str, scheme: str) -> RejectionReason | None:
    """The rejection reason a document title code names, or None for any other title."""
    if scheme.strip() != REASON_SCHEME:
        return None
    try:
        return RejectionReason(code.strip())
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class RejectedInstance:
    """One instance a rejection note names (stored already or still to come)."""

    study_instance_uid: Uid
    series_instance_uid: Uid
    sop_instance_uid: Uid
    sop_class_uid: Uid


@dataclass(frozen=True, slots=True)
class Rejection:
    """A rejection note: which instances it rejects, why, and the note's own SOP UID."""

    reason: RejectionReason
    note: Uid
    instances: tuple[RejectedInstance, ...]

    @property
    def study_uids(self) -> tuple[Uid, ...]:
        """The studies of the rejected instances, each once, in the note's order."""
        return tuple(dict.fromkeys(i.study_instance_uid for i in self.instances))


@dataclass(frozen=True, slots=True)
class RejectionRecord:
    """An instance hidden by a rejection note: why, when, and which note (kept, not deleted)."""

    sop_instance_uid: Uid
    series_instance_uid: Uid
    study_instance_uid: Uid
    reason: RejectionReason
    rejected_at: datetime
    rejected_by: Uid  # the SOP Instance UID of the rejection note


__all__ = [
    "REASON_SCHEME",
    "RejectedInstance",
    "Rejection",
    "RejectionReason",
    "RejectionRecord",
    "reason_for",
]
