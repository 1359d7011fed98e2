"""The workflow outcomes the KPIs are computed from."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pacsflow.domain.matching import ExceptionReason, MatchOutcomeKind, MismatchSource
from pacsflow.domain.orders import AccessionNumber
from pacsflow.domain.uids import Uid


class EventLog(Protocol):
    """Timestamped workflow outcomes the KPIs are computed from."""

    def record_match(
        self,
        study_uid: Uid,
        kind: MatchOutcomeKind,
        at: datetime,
        reason: ExceptionReason | None = None,
        source: MismatchSource | None = None,
    ) -> None:
        """Record how a study's matching ended."""
        ...

    def record_order_event(self, accession: AccessionNumber, event: str, at: datetime) -> None:
        """Record an order lifecycle event (placed, changed, cancelled, status)."""
        ...


__all__ = [
    "EventLog",
]
