"""Storage commitment: which requested instances are held, and why the others are not."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pacsflow.domain.uids import Uid


@dataclass(frozen=True, slots=True)
class InstanceReference:
    """One instance a requestor asks pacsflow to commit to keep (by SOP Class and Instance)."""

    sop_class_uid: str
    sop_instance_uid: Uid


class CommitmentFailure(enum.Enum):
    """Why an instance is not committed."""

    #: The instance is not stored and indexed.
    UNKNOWN_INSTANCE = "unknown instance"


@dataclass(frozen=True, slots=True)
class FailedReference:
    """An instance pacsflow cannot commit, with the reason."""

    reference: InstanceReference
    reason: CommitmentFailure


@dataclass(frozen=True, slots=True)
class CommitmentResult:
    """The answer to one commitment request (transaction): committed and failed instances."""

    transaction_uid: Uid
    committed: tuple[InstanceReference, ...]
    failed: tuple[FailedReference, ...]


__all__ = ["CommitmentFailure", "CommitmentResult", "FailedReference", "InstanceReference"]
