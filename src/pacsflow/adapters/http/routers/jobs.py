"""The durable job queue: jobs, queue figures, replaying dead letters."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel

from pacsflow.adapters.http.context import Services
from pacsflow.adapters.http.routes import Routes
from pacsflow.adapters.http.schemas import DbId
from pacsflow.domain.access import Permission
from pacsflow.domain.jobs import Job, JobState

routes = Routes(tags=["jobs"])


class JobOut(BaseModel):
    """A durable job: what it does, where it stands, its last error."""

    id: int
    kind: str
    state: JobState
    attempts: int
    destination: str
    ordering_key: str
    payload: dict[str, Any]
    created_at: datetime
    run_at: datetime
    finished_at: datetime | None
    last_error: str


class QueueStatsOut(BaseModel):
    """Queue depth, age and failures."""

    depth: int
    by_state: dict[str, int]
    by_kind: dict[str, dict[str, int]]
    oldest_pending_seconds: float | None
    failing_destinations: dict[str, int]


class ReplayedOut(BaseModel):
    """How many dead-lettered jobs were made pending again."""

    replayed: int


def _job(job: Job) -> JobOut:
    return JobOut(
        id=job.id,
        kind=job.kind,
        state=job.state,
        attempts=job.attempts,
        destination=job.destination,
        ordering_key=job.ordering_key,
        payload=dict(job.payload),
        created_at=job.created_at,
        run_at=job.run_at,
        finished_at=job.finished_at,
        last_error=job.last_error,
    )


@routes.get(
    "/api/jobs",
    Permission.READ_JOBS,
)
def list_jobs(
    services: Services,
    state: JobState | None = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
) -> list[JobOut]:
    """Jobs, newest first; `state=dead` lists the dead letters with their last error."""
    return [_job(j) for j in services.jobs.list(state=state, kind=kind, limit=limit)]


# Before /api/jobs/{job_id}, which would otherwise take "stats" for an id.
@routes.get(
    "/api/jobs/stats",
    Permission.READ_JOBS,
)
def job_stats(services: Services) -> QueueStatsOut:
    """Queue depth by state and kind, age of the oldest pending job, failing destinations."""
    stats = services.jobs.stats()
    age = stats.oldest_pending_age
    return QueueStatsOut(
        depth=stats.depth,
        by_state=dict(stats.by_state),
        by_kind={k: dict(v) for k, v in stats.by_kind.items()},
        oldest_pending_seconds=age.total_seconds() if age is not None else None,
        failing_destinations=dict(stats.failing_destinations),
    )


@routes.get(
    "/api/jobs/{job_id}",
    Permission.READ_JOBS,
)
def get_job(job_id: DbId, services: Services) -> JobOut:
    """One job."""
    return _job(services.jobs.get(job_id))


@routes.post(
    "/api/jobs/replay-dead",
    Permission.MANAGE_JOBS,
)
def replay_dead(
    services: Services, kind: Annotated[str | None, Query(max_length=64)] = None
) -> ReplayedOut:
    """Replay every dead-lettered job (of one kind) with fresh attempts."""
    return ReplayedOut(replayed=services.jobs.replay_dead(kind))


@routes.post(
    "/api/jobs/{job_id}/replay",
    Permission.MANAGE_JOBS,
)
def replay_job(job_id: DbId, services: Services) -> JobOut:
    """Run a dead-lettered job again with fresh attempts (409 when it is not dead)."""
    return _job(services.jobs.replay(job_id))
