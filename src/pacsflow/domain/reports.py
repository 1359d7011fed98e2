"""Reports: what the reporting system says about a study, and the study's report status.

A report arrives with a result status (HL7 OBR-25: P preliminary, F final, C corrected,
X cancelled; I/R/S in progress). Every version is kept. The study's report status moves
forward only: a preliminary that arrives after the final is kept as a version but does not
take the study back to preliminary; a correction follows a final; a cancellation of the
current report takes the study back to unread.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pacsflow.domain.errors import InvalidInput, MissingIdentifier, quote
from pacsflow.domain.patients import PatientIdentifier
from pacsflow.domain.uids import Uid


class ReportStatus(enum.StrEnum):
    """Where a study's report stands (the reading worklist and the result rail use it)."""

    UNREAD = "unread"
    IN_PROGRESS = "in_progress"
    PRELIMINARY = "preliminary"
    FINAL = "final"
    CORRECTED = "corrected"
    CANCELLED = "cancelled"  # a version's status only: the study goes back to unread


_RANK = {
    ReportStatus.UNREAD: 0,
    ReportStatus.IN_PROGRESS: 1,
    ReportStatus.PRELIMINARY: 2,
    ReportStatus.FINAL: 3,
    ReportStatus.CORRECTED: 4,
}

#: HL7 OBR-25 result status codes (table 0123) pacsflow understands.
RESULT_STATUS_CODES: dict[str, ReportStatus] = {
    "I": ReportStatus.IN_PROGRESS,
    "R": ReportStatus.IN_PROGRESS,
    "S": ReportStatus.IN_PROGRESS,
    "P": ReportStatus.PRELIMINARY,
    "F": ReportStatus.FINAL,
    "C": ReportStatus.CORRECTED,
    "X": ReportStatus.CANCELLED,
}

#: The OBR-25 code sent for each status.
STATUS_CODES: dict[ReportStatus, str] = {
    ReportStatus.IN_PROGRESS: "I",
    ReportStatus.PRELIMINARY: "P",
    ReportStatus.FINAL: "F",
    ReportStatus.CORRECTED: "C",
    ReportStatus.CANCELLED: "X",
}


def status_from_code(code: str) -> ReportStatus:
    """The report status of an HL7 result status code; InvalidInput for others."""
    found = RESULT_STATUS_CODES.get(code.strip().upper())
    if found is None:
        raise InvalidInput(
            f"result status {quote(code)} is not one of I, R, S, P, F, C, X", location="OBR-25"
        )
    return found


def is_finally_reported(status: ReportStatus) -> bool:
    """True when the study needs no more reading."""
    return status in (ReportStatus.FINAL, ReportStatus.CORRECTED)


def study_status(versions: Iterable[ReportStatus]) -> ReportStatus:
    """The study's report status after these versions, in arrival order."""
    current = ReportStatus.UNREAD
    for status in versions:
        if status is ReportStatus.CANCELLED:
            current = ReportStatus.UNREAD
        elif _RANK[status] > _RANK[current]:
            current = status
    return current


@dataclass(frozen=True, slots=True)
class Report:
    """One report version as the reporting system sent it."""

    accession_number: str
    status: ReportStatus
    text: str
    patient: PatientIdentifier | None = None
    study_instance_uid: str = ""
    radiologist: str = ""
    observed_at: datetime | None = None
    report_id: str = ""  # the reporting system's id (filler order number), if any

    def __post_init__(self) -> None:
        if not self.accession_number.strip() and not self.study_instance_uid.strip():
            raise MissingIdentifier(
                "a report needs an accession number or a Study Instance UID",
                location="OBR-18",
            )


@dataclass(frozen=True, slots=True)
class ReportRecord:
    """A stored report version and the study it is attached to (if any yet)."""

    id: int
    report: Report
    received_at: datetime
    source: str
    attached_study_uid: Uid | None = None
    flag: str = ""  # why it is not attached: unknown study, study held


class DeliveryState(enum.StrEnum):
    """Where sending one result message to one subscriber stands."""

    QUEUED = "queued"
    DELIVERED = "delivered"
    FAILED = "failed"  # refused (AE/AR) or given up; the job says why


@dataclass(frozen=True, slots=True)
class DeliveryStats:
    """How well results reach one subscriber."""

    subscriber: str
    total: int
    delivered: int
    delivered_in_time: int
    failed: int
    pending: int

    @property
    def success_rate(self) -> float | None:
        """Share of settled messages delivered within the target time."""
        settled = self.delivered + self.failed
        return self.delivered_in_time / settled if settled else None


__all__ = [
    "RESULT_STATUS_CODES",
    "STATUS_CODES",
    "DeliveryState",
    "DeliveryStats",
    "Report",
    "ReportRecord",
    "ReportStatus",
    "is_finally_reported",
    "status_from_code",
    "study_status",
]
