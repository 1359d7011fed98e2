"""The reading worklist: which published study a radiologist should read next, and claims.

The worklist is ordered by priority (STAT, then ASAP, then ROUTINE), then by the AI triage
score (higher first; a study without a score comes after every scored study of its
priority), then by how far the study has gone through its priority's reading target
(time waiting divided by the target: the most overdue first). Studies with equal keys keep
the order they were given in.

A radiologist claims a study for a while so that nobody reads it twice; others see who holds
it. The holder may claim it again to extend the claim, or release it. A claim that has
expired holds nothing: anyone may take the study.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pacsflow.domain.errors import ConflictingState, InvalidInput
from pacsflow.domain.orders import Priority
from pacsflow.domain.patients import PatientIdentifier
from pacsflow.domain.uids import Uid

#: Reading targets (minutes from arrival to report) when the configuration names none.
DEFAULT_TARGET_MINUTES: Mapping[Priority, float] = {
    Priority.STAT: 60.0,
    Priority.ASAP: 240.0,
    Priority.ROUTINE: 1440.0,
}

_RANK = {Priority.STAT: 0, Priority.ASAP: 1, Priority.ROUTINE: 2}


@dataclass(frozen=True, slots=True)
class ReadingTargets:
    """How long a study of each priority may wait for its report."""

    minutes: Mapping[Priority, float] = field(default_factory=lambda: dict(DEFAULT_TARGET_MINUTES))

    def __post_init__(self) -> None:
        merged = {**DEFAULT_TARGET_MINUTES, **self.minutes}
        for priority, value in merged.items():
            if not math.isfinite(value) or value <= 0:
                raise InvalidInput(
                    f"the reading target of {priority.value} must be a positive number of "
                    f"minutes, not {value!r}",
                    location="reading_targets",
                )
        object.__setattr__(self, "minutes", merged)

    @classmethod
    def from_minutes(cls, minutes: Mapping[str, float]) -> ReadingTargets:
        """Targets from minutes per priority name (STAT, ASAP, ROUTINE); others default."""
        try:
            return cls({Priority(name.strip().upper()): value for name, value in minutes.items()})
        except ValueError as exc:
            raise InvalidInput(str(exc), location="reading_targets") from exc

    def for_priority(self, priority: Priority) -> timedelta:
        """The target of one priority."""
        return timedelta(minutes=self.minutes[priority])


@dataclass(frozen=True, slots=True)
class Claim:
    """A radiologist holding a study for reading until the claim expires."""

    study_instance_uid: Uid
    reader: str
    claimed_at: datetime
    expires_at: datetime

    def is_active(self, now: datetime) -> bool:
        """True while the claim holds the study."""
        return now < self.expires_at


@dataclass(frozen=True, slots=True)
class ReadingItem:
    """A published study waiting for its final report, with what orders it on the list."""

    study_instance_uid: Uid
    accession_number: str
    priority: Priority
    waiting_since: datetime  # when the study arrived
    patient: PatientIdentifier | None = None
    patient_name: str = ""
    modalities: tuple[str, ...] = ()
    procedure_code: str = ""
    procedure_description: str = ""
    triage_score: float | None = None  # filled by AI triage; None: not scored
    priors_ready: bool | None = None  # None: no priors were requested
    claim: Claim | None = None  # the last claim, possibly expired

    def __post_init__(self) -> None:
        if self.triage_score is not None:
            check_triage_score(self.triage_score)

    def waiting(self, now: datetime) -> timedelta:
        """How long the study has waited (never negative, whatever the clocks say)."""
        return max(now - self.waiting_since, timedelta(0))

    def active_claim(self, now: datetime) -> Claim | None:
        """The claim that holds the study now, if any."""
        return self.claim if self.claim is not None and self.claim.is_active(now) else None


def check_triage_score(score: float) -> None:
    """Refuse a score that cannot be ordered (NaN, infinities)."""
    if not math.isfinite(score):
        raise InvalidInput(
            f"a triage score is a finite number, not {score!r}", location="triage_score"
        )


def target_ratio(item: ReadingItem, now: datetime, targets: ReadingTargets) -> float:
    """How much of its priority's target the study has waited (above 1: overdue)."""
    return item.waiting(now) / targets.for_priority(item.priority)


def is_overdue(item: ReadingItem, now: datetime, targets: ReadingTargets) -> bool:
    """True when the study has waited longer than its priority's target."""
    return item.waiting(now) > targets.for_priority(item.priority)


def reading_key(
    item: ReadingItem, now: datetime, targets: ReadingTargets
) -> tuple[int, int, float, float]:
    """The sort key of the worklist: smaller reads first."""
    score = item.triage_score
    return (
        _RANK[item.priority],
        0 if score is not None else 1,
        -score if score is not None else 0.0,
        -target_ratio(item, now, targets),
    )


def order_worklist(
    items: Iterable[ReadingItem], now: datetime, targets: ReadingTargets
) -> list[ReadingItem]:
    """The items in reading order: priority, triage score, then most overdue (stable)."""
    return sorted(items, key=lambda item: reading_key(item, now, targets))


@dataclass(frozen=True, slots=True)
class ReadingFilter:
    """Narrows the worklist: a modality, procedures (any of them), a reader holding a claim."""

    modality: str = ""
    procedures: tuple[str, ...] = ()  # a procedure code or a part of its description
    reader: str = ""


def matches(item: ReadingItem, flt: ReadingFilter, now: datetime) -> bool:
    """True when the item passes every condition the filter sets."""
    if flt.modality and flt.modality.strip().upper() not in {m.upper() for m in item.modalities}:
        return False
    if flt.procedures:
        code = item.procedure_code.strip().upper()
        text = item.procedure_description.upper()
        wanted = [p.strip().upper() for p in flt.procedures if p.strip()]
        if wanted and not any(w in code or w in text for w in wanted):
            return False
    if flt.reader:
        claim = item.active_claim(now)
        if claim is None or claim.reader != flt.reader:
            return False
    return True


class StudyClaimed(ConflictingState):
    """Another radiologist holds the study."""

    def __init__(self, claim: Claim) -> None:
        super().__init__(
            f"study {claim.study_instance_uid} is claimed by {claim.reader} until "
            f"{claim.expires_at.isoformat()}"
        )
        self.claim = claim


class NotClaimHolder(ConflictingState):
    """The caller does not hold the study it tries to release."""


def take_claim(
    current: Claim | None, study_uid: Uid, reader: str, now: datetime, duration: timedelta
) -> Claim:
    """The claim reader gets now (a new one, or theirs extended); StudyClaimed if held."""
    if not reader:
        raise InvalidInput("a claim needs a reader", location="reader")
    if duration <= timedelta(0):
        raise InvalidInput("a claim must last a while", location="reading_claim_minutes")
    if current is not None and current.is_active(now) and current.reader != reader:
        raise StudyClaimed(current)
    return Claim(study_uid, reader, now, now + duration)


def check_release(current: Claim | None, reader: str, now: datetime) -> None:
    """Allow the holder (even of an expired claim) to release it; NotClaimHolder otherwise."""
    if current is None:
        raise NotClaimHolder("the study is not claimed")
    if current.reader != reader:
        holds = "holds" if current.is_active(now) else "held"
        raise NotClaimHolder(f"{current.reader} {holds} the study, not {reader}")


__all__ = [
    "DEFAULT_TARGET_MINUTES",
    "Claim",
    "NotClaimHolder",
    "ReadingFilter",
    "ReadingItem",
    "ReadingTargets",
    "StudyClaimed",
    "check_release",
    "check_triage_score",
    "is_overdue",
    "matches",
    "order_worklist",
    "reading_key",
    "take_claim",
    "target_ratio",
]
