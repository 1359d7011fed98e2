"""The record of reconciliation actions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from pacsflow.domain.reconciliation import ReconciliationAction
from pacsflow.domain.uids import Uid


class ReconciliationLog(Protocol):
    """The record of reconciliation actions."""

    def add(self, action: ReconciliationAction) -> int:
        """Record an action; its id."""
        ...

    def get(self, action_id: int) -> ReconciliationAction | None:
        """One action."""
        ...

    def mark_undone(self, action_id: int, at: datetime) -> None:
        """Record that an action was undone."""
        ...

    def later(self, action_id: int, study_uids: Sequence[Uid]) -> Sequence[ReconciliationAction]:
        """Actions after this one, not undone, on (or splitting into) any of these studies."""
        ...

    def has_actions(self, exception_id: int) -> bool:
        """True when any action (undone or not) was recorded on the exception."""
        ...


__all__ = [
    "ReconciliationLog",
]
