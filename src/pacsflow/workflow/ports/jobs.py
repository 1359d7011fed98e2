"""The durable job queue."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from pacsflow.domain.jobs import Job, JobState, NewJob, QueueStats


class JobQueue(Protocol):
    """Durable jobs: enqueued beside the event that causes them, claimed under a lease."""

    def enqueue(self, job: NewJob, now: datetime) -> int:
        """Add a pending job (due at job.run_at, or now); its id."""
        ...

    def expedite(self, ordering_key: str, now: datetime, payload: Mapping[str, object]) -> int:
        """Make the pending jobs with this ordering key due now, merging payload into theirs;
        how many there were."""
        ...

    def enqueue_or_extend(
        self, job: NewJob, list_key: str, item: object, max_items: int, now: datetime
    ) -> int:
        """Append item to the list payload[list_key] of a pending job of the same kind and
        ordering key that has room, or enqueue job with [item]; the job's id.

        Safe against a concurrent claim: the pending job is locked while it is extended.
        """
        ...

    def due(self, now: datetime, kinds: Collection[str]) -> bool:
        """True when some job of these kinds could be claimed now (a cheap read)."""
        ...

    def claim(
        self,
        worker: str,
        now: datetime,
        lease: timedelta,
        *,
        kinds: Collection[str],
        limit: int,
        destination_limits: Mapping[str, int],
        default_destination_limit: int,
    ) -> list[Job]:
        """Lease up to limit due jobs to worker, oldest first, counting an attempt on each.

        Due: pending with run_at reached, or running with an expired lease (its worker died).
        A job waits while an older job with its ordering key is unfinished, and while its
        destination already has its limit of running jobs.
        """
        ...

    def renew(self, ids: Collection[int], worker: str, until: datetime) -> None:
        """Extend the leases worker still holds."""
        ...

    def finish(self, job_id: int, worker: str, now: datetime) -> bool:
        """Mark a leased job done; False when the lease was lost (another worker has it)."""
        ...

    def retry(self, job_id: int, worker: str, error: str, run_at: datetime, now: datetime) -> bool:
        """Put a leased job back to pending until run_at, keeping the error."""
        ...

    def postpone(self, job_id: int, worker: str, run_at: datetime, now: datetime) -> bool:
        """Put a leased job back to pending until run_at without counting the attempt."""
        ...

    def bury(self, job_id: int, worker: str, error: str, now: datetime) -> bool:
        """Dead-letter a leased job with its last error."""
        ...

    def get(self, job_id: int) -> Job | None:
        """One job."""
        ...

    def has_job(
        self, ordering_key: str, *, unfinished_only: bool = True, pending_only: bool = False
    ) -> bool:
        """True when a job has this ordering key (only pending or running ones, by default;
        only pending ones with pending_only)."""
        ...

    def list(
        self, *, state: JobState | None = None, kind: str | None = None, limit: int = 100
    ) -> Sequence[Job]:
        """Jobs, newest first."""
        ...

    def replay(self, job_id: int, now: datetime) -> bool:
        """Make a dead-lettered job pending again with fresh attempts; False if not dead."""
        ...

    def stats(self, now: datetime) -> QueueStats:
        """Depth, age and failures."""
        ...


__all__ = [
    "JobQueue",
]
