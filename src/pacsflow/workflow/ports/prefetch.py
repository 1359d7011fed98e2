"""Prefetch requests and the retrieval of priors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from pacsflow.domain.patients import PatientIdentifier
from pacsflow.domain.prefetch import PriorRecord, PriorState
from pacsflow.domain.uids import Uid


class PrefetchStore(Protocol):
    """Prefetch requests: which priors were chosen for what, and their retrieval."""

    def add(self, record: PriorRecord) -> bool:
        """Record a chosen prior; False when this request already has this study."""
        ...

    def expected_patient(self, study_uid: Uid) -> PatientIdentifier | None:
        """The patient a study is being fetched for (it arrives as a prior, not an exam)."""
        ...

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
        ...

    def list(self, request_key: str | None = None, limit: int = 500) -> Sequence[PriorRecord]:
        """Chosen priors, newest request first."""
        ...


__all__ = [
    "PrefetchStore",
]
