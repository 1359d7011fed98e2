"""Storage commitment: sending the result to the requestor."""

from __future__ import annotations

from typing import Protocol

from pacsflow.domain.commitment import CommitmentResult


class CommitmentReporter(Protocol):
    """Sends a commitment result to the AE that asked for it (on an association of its own)."""

    def report_commitment(self, requestor: str, result: CommitmentResult) -> None:
        """Deliver the result; TransientError when the requestor cannot take it now,
        PermanentError when it can never be reached (not a configured peer)."""
        ...


__all__ = ["CommitmentReporter"]
