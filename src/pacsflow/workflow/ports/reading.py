"""What the reading worklist reads and keeps."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from pacsflow.domain.prefetch import PriorState
from pacsflow.domain.reading import Claim, ReadingItem
from pacsflow.domain.uids import Uid


class ReadingStore(Protocol):
    """What the reading worklist reads and keeps: candidates, triage scores, claims."""

    def candidates(self, study_uids: Sequence[Uid] = ()) -> Sequence[ReadingItem]:
        """Published studies that may still need reading, with order, triage score, last claim.

        Left out: studies in the exceptions queue, priors fetched from archives, and studies
        whose report is final (the caller confirms with the report statuses). Only the named
        studies when some are given. priors_ready is left unknown.
        """
        ...

    def set_triage_score(self, study_uid: Uid, score: float | None) -> bool:
        """Record a study's AI triage score (None clears it); False when there is no such study."""
        ...

    def prior_states(self, request_keys: Sequence[str]) -> dict[str, list[PriorState]]:
        """The states of the priors chosen for each of these prefetch requests that has any."""
        ...

    def unfinished_jobs(self, ordering_keys: Sequence[str]) -> set[str]:
        """Those of these ordering keys that have a pending or running job."""
        ...

    def claim_of(self, study_uid: Uid) -> Claim | None:
        """The last claim on a study (possibly expired)."""
        ...

    def put_claim(self, claim: Claim, now: datetime) -> Claim:
        """Store the claim unless another reader holds an unexpired one; the claim that stands."""
        ...

    def delete_claim(self, study_uid: Uid, reader: str) -> bool:
        """Remove the reader's claim on a study; False when they hold none."""
        ...


__all__ = [
    "ReadingStore",
]
