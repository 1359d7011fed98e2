"""Looking after the job queue: list, inspect, replay dead-lettered jobs, and its numbers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pacsflow.domain.errors import ConflictingState, NotFound
from pacsflow.domain.jobs import Job, JobState, NewJob, QueueStats
from pacsflow.workflow.ports.clock import Clock
from pacsflow.workflow.ports.uow import UnitOfWorkFactory


class UnknownJob(NotFound):
    """No job has this id."""


class Jobs:
    """The operator's view of the durable job queue."""

    def __init__(
        self, uow: UnitOfWorkFactory, clock: Clock, wake: Callable[[], None] | None = None
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._wake = wake or (lambda: None)

    def enqueue(self, job: NewJob) -> int:
        """Enqueue a job on its own (work that no other change causes); its id."""
        with self._uow() as uow:
            job_id = uow.jobs.enqueue(job, self._clock.now())
            uow.commit()
        self._wake()
        return job_id

    def list(
        self, *, state: JobState | None = None, kind: str | None = None, limit: int = 100
    ) -> Sequence[Job]:
        """Jobs, newest first."""
        with self._uow(read_only=True) as uow:
            return uow.jobs.list(state=state, kind=kind, limit=limit)

    def get(self, job_id: int) -> Job:
        """One job; UnknownJob when there is none."""
        with self._uow(read_only=True) as uow:
            job = uow.jobs.get(job_id)
        if job is None:
            raise UnknownJob(f"no job {job_id}")
        return job

    def replay(self, job_id: int) -> Job:
        """Run a dead-lettered job again with fresh attempts."""
        with self._uow() as uow:
            job = uow.jobs.get(job_id)
            if job is None:
                raise UnknownJob(f"no job {job_id}")
            if not uow.jobs.replay(job_id, self._clock.now()):
                raise ConflictingState(
                    f"job {job_id} is {job.state.value}: only dead-lettered jobs are replayed"
                )
            uow.commit()
            replayed = uow.jobs.get(job_id)
        self._wake()
        assert replayed is not None
        return replayed

    def replay_dead(self, kind: str | None = None, limit: int = 10_000) -> int:
        """Replay every dead-lettered job (of one kind); how many."""
        with self._uow() as uow:
            now = self._clock.now()
            dead = uow.jobs.list(state=JobState.DEAD, kind=kind, limit=limit)
            count = sum(uow.jobs.replay(job.id, now) for job in dead)
            uow.commit()
        if count:
            self._wake()
        return count

    def stats(self) -> QueueStats:
        """Queue depth, oldest pending age, failures per destination."""
        with self._uow(read_only=True) as uow:
            return uow.jobs.stats(self._clock.now())


__all__ = ["Jobs", "UnknownJob"]
