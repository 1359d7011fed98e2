"""Report versions and result deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from pacsflow.domain.reports import DeliveryState, DeliveryStats, Report, ReportRecord, ReportStatus
from pacsflow.domain.uids import Uid


class ReportStore(Protocol):
    """Report versions, their attachment to studies, and result deliveries."""

    def add(self, report: Report, received_at: datetime, source: str, flag: str = "") -> int:
        """Keep a report version; its id."""
        ...

    def get(self, report_id: int) -> ReportRecord | None:
        """One report version."""
        ...

    def attach(self, report_id: int, study_uid: Uid) -> None:
        """Attach a report version to its study (clears the flag)."""
        ...

    def flag(self, report_id: int, reason: str) -> None:
        """Say why a report version is not attached."""
        ...

    def unattached_for(self, study_uid: Uid) -> Sequence[ReportRecord]:
        """Unattached versions naming the study's accession number or Study Instance UID."""
        ...

    def for_study(self, study_uid: Uid) -> Sequence[ReportRecord]:
        """The versions attached to a study, in arrival order."""
        ...

    def statuses(self, study_uids: Sequence[Uid]) -> dict[Uid, ReportStatus]:
        """The report status of each study (unread when it has no report)."""
        ...

    def list(self, *, unattached_only: bool = False, limit: int = 100) -> Sequence[ReportRecord]:
        """Report versions, newest first."""
        ...

    def add_delivery(
        self, subscriber: str, event: str, study_uid: Uid, report_id: int | None, at: datetime
    ) -> int:
        """Record a result message queued for a subscriber; its id."""
        ...

    def settle_delivery(
        self, delivery_id: int, state: DeliveryState, at: datetime, ack_code: str, error: str
    ) -> None:
        """Record how the delivery ended."""
        ...

    def has_delivery(self, subscriber: str, event: str, study_uid: Uid) -> bool:
        """True when this event of this study was ever queued for the subscriber."""
        ...

    def delivery_stats(self, subscriber: str, target_seconds: float) -> DeliveryStats:
        """Counts of one subscriber's deliveries."""
        ...


__all__ = [
    "ReportStore",
]
