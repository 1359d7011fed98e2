"""Durable work: the states of a job and when a failed one runs again.

A job is work an event caused (forward a study, fetch priors, deliver a result). It is
enqueued in the transaction that records the event, claimed by one worker under a lease,
and ends done or dead-lettered with its last error; a dead-lettered job can be replayed.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any


class JobState(enum.StrEnum):
    """Where a job stands."""

    PENDING = "pending"  # waiting for its run_at time and a free worker
    RUNNING = "running"  # claimed by a worker whose lease has not run out
    DONE = "done"
    DEAD = "dead"  # dead-lettered: gave up, kept with its last error until replayed


@dataclass(frozen=True, slots=True)
class NewJob:
    """Work to enqueue.

    destination: the peer the job talks to (per-destination concurrency limits).
    ordering_key: jobs sharing a key run one at a time, in the order they were enqueued
    (messages for one study reach a subscriber in order); a dead-lettered job stops blocking.
    """

    kind: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    destination: str = ""
    ordering_key: str = ""
    run_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """A job as stored."""

    id: int
    kind: str
    payload: Mapping[str, Any]
    state: JobState
    attempts: int
    run_at: datetime
    created_at: datetime
    destination: str = ""
    ordering_key: str = ""
    last_error: str = ""
    lease_owner: str = ""
    lease_until: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, and when to give up.

    After attempt n fails, the next runs after a delay drawn from [d/2, d] where
    d = min(cap, base * 2**(n-1)): spread out so a recovering peer is not hit by a herd.
    """

    max_attempts: int = 8
    base: timedelta = timedelta(seconds=2)
    cap: timedelta = timedelta(minutes=10)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base <= timedelta(0) or self.cap < self.base:
            raise ValueError("need 0 < base <= cap")

    def is_exhausted(self, attempts: int) -> bool:
        """True when a job that failed `attempts` times must be dead-lettered."""
        return attempts >= self.max_attempts

    def delay(self, attempts: int, jitter: float) -> timedelta:
        """How long to wait after the attempts-th failure; jitter in [0, 1] picks in the window."""
        if attempts < 1:
            raise ValueError("a delay follows a failed attempt")
        jitter = min(max(jitter, 0.0), 1.0)
        exponent = min(attempts - 1, 40)  # 2**40 * base is far past any cap
        full: timedelta = min(self.cap, self.base * (2**exponent))
        return full / 2 + (full / 2) * jitter


class RetryLater(Exception):
    """A job that cannot run yet (a study not stable yet): run again at `at`, no attempt used."""

    def __init__(self, at: datetime, reason: str = "") -> None:
        super().__init__(reason or f"not before {at.isoformat()}")
        self.at = at


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Depth, age and failures of the queue, for dashboards and alerts."""

    by_state: Mapping[str, int]
    by_kind: Mapping[str, Mapping[str, int]]
    oldest_pending_age: timedelta | None
    failing_destinations: Mapping[str, int]  # destination -> jobs that failed at least once

    @property
    def depth(self) -> int:
        """Jobs waiting or running."""
        return self.by_state.get(JobState.PENDING, 0) + self.by_state.get(JobState.RUNNING, 0)


__all__ = ["Job", "JobState", "NewJob", "QueueStats", "RetryLater", "RetryPolicy"]
