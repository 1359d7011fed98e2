"""Performed procedure steps (MPPS)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pacsflow.domain.procedure_steps import PerformedStep
from pacsflow.domain.uids import Uid


class ProcedureStepRepository(Protocol):
    """Performed procedure steps (MPPS)."""

    def get(self, sop_uid: Uid) -> PerformedStep | None:
        """One performed step."""
        ...

    def add(self, step: PerformedStep, at: datetime) -> bool:
        """Record a new performed step; False when one with its SOP Instance UID exists."""
        ...

    def save(self, step: PerformedStep, at: datetime) -> None:
        """Insert or update a performed step."""
        ...


__all__ = [
    "ProcedureStepRepository",
]
