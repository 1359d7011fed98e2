"""The durable job queue in SQL: rows claimed under a lease.

On PostgreSQL the claim locks its candidate rows `FOR UPDATE SKIP LOCKED`, so the workers of
several nodes share one queue without taking the same job. On SQLite the clause is not
rendered; every write transaction there already holds the database's one write lock
(BEGIN IMMEDIATE), which gives the same guarantee for the one node SQLite serves.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from pacsflow.adapters.db import tables as t
from pacsflow.adapters.db.timestamps import aware_or_none, utc
from pacsflow.domain.jobs import Job, JobState, NewJob, QueueStats

_J = t.jobs
_UNFINISHED = (JobState.PENDING.value, JobState.RUNNING.value)


def _job(row: sa.Row[Any]) -> Job:
    run_at = aware_or_none(row.run_at)
    created_at = aware_or_none(row.created_at)
    assert run_at is not None
    assert created_at is not None
    return Job(
        id=row.pk,
        kind=row.kind,
        payload=json.loads(row.payload),
        state=JobState(row.state),
        attempts=row.attempts,
        run_at=run_at,
        created_at=created_at,
        destination=row.destination,
        ordering_key=row.ordering_key,
        last_error=row.last_error,
        lease_owner=row.lease_owner,
        lease_until=aware_or_none(row.lease_until),
        finished_at=aware_or_none(row.finished_at),
    )


def _due(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(
        sa.and_(_J.c.state == JobState.PENDING.value, _J.c.run_at <= now),
        sa.and_(_J.c.state == JobState.RUNNING.value, _J.c.lease_until < now),
    )


def _not_blocked() -> sa.ColumnElement[bool]:
    """No older unfinished job shares the ordering key."""
    older = _J.alias("older")
    return ~sa.exists().where(
        _J.c.ordering_key != "",
        older.c.ordering_key == _J.c.ordering_key,
        older.c.pk < _J.c.pk,
        older.c.state.in_(_UNFINISHED),
    )


# The statements the ingest hooks run per stored instance, built once: building a
# statement per call costs more than running it.


@functools.cache
def _insert() -> sa.Insert:
    return sa.insert(_J)


@functools.cache
def _latest_pending() -> sa.Select[Any]:
    """The newest pending job of a kind and ordering key."""
    return (
        sa.select(_J.c.pk, _J.c.payload)
        .where(
            _J.c.kind == sa.bindparam("kind"),
            _J.c.ordering_key == sa.bindparam("ordering_key"),
            _J.c.state == JobState.PENDING.value,
        )
        .order_by(_J.c.pk.desc())
        .limit(1)
        .with_for_update(skip_locked=True)  # PostgreSQL: never one a claim holds
    )


@functools.cache
def _extend() -> sa.Update:
    """A pending job's payload replaced (still pending: not claimed meanwhile)."""
    return (
        sa.update(_J)
        .where(_J.c.pk == sa.bindparam("job_pk"), _J.c.state == JobState.PENDING.value)
        .values(payload=sa.bindparam("extended"), updated_at=sa.bindparam("at"))
    )


@functools.cache
def _has_job(states: tuple[str, ...]) -> sa.Select[Any]:
    """A job with an ordering key, in one of these states (any state when none)."""
    query = sa.select(_J.c.pk).where(_J.c.ordering_key == sa.bindparam("ordering_key")).limit(1)
    return query.where(_J.c.state.in_(states)) if states else query


class SqlJobQueue:
    """Jobs in SQL, inside the caller's transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def enqueue(self, job: NewJob, now: datetime) -> int:
        """Add a pending job (due at job.run_at, or now); its id."""
        now = utc(now)
        result = self._c.execute(
            _insert(),
            {
                "kind": job.kind,
                "payload": json.dumps(dict(job.payload), sort_keys=True),
                "state": JobState.PENDING.value,
                "attempts": 0,
                "run_at": utc(job.run_at) if job.run_at else now,
                "created_at": now,
                "updated_at": now,
                "destination": job.destination,
                "ordering_key": job.ordering_key,
            },
        )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def expedite(self, ordering_key: str, now: datetime, payload: Mapping[str, object]) -> int:
        """Make the pending jobs with this ordering key due now, with payload merged in."""
        rows = self._c.execute(
            sa.select(_J.c.pk, _J.c.payload)
            .where(_J.c.ordering_key == ordering_key, _J.c.state == JobState.PENDING.value)
            .with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            merged = {**json.loads(row.payload), **payload}
            self._c.execute(
                sa.update(_J)
                .where(_J.c.pk == row.pk, _J.c.state == JobState.PENDING.value)
                .values(
                    payload=json.dumps(merged, sort_keys=True),
                    run_at=utc(now),
                    updated_at=utc(now),
                )
            )
        return len(rows)

    def enqueue_or_extend(
        self, job: NewJob, list_key: str, item: object, max_items: int, now: datetime
    ) -> int:
        """Append item to a pending job's list payload, or enqueue a new job with [item]."""
        row = self._c.execute(
            _latest_pending(), {"kind": job.kind, "ordering_key": job.ordering_key}
        ).first()
        if row is not None:
            payload = json.loads(row.payload)
            items = payload.get(list_key, [])
            if len(items) < max_items:
                items.append(item)
                payload[list_key] = items
                self._c.execute(
                    _extend(),
                    {
                        "job_pk": row.pk,
                        "extended": json.dumps(payload, sort_keys=True),
                        "at": utc(now),
                    },
                )
                return int(row.pk)
        return self.enqueue(replace(job, payload={**job.payload, list_key: [item]}), now)

    def due(self, now: datetime, kinds: Collection[str]) -> bool:
        """True when some job of these kinds could be claimed now (a cheap read)."""
        query = sa.select(_J.c.pk).where(_due(utc(now)), _J.c.kind.in_(list(kinds))).limit(1)
        return self._c.execute(query).first() is not None

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
        """Lease up to limit due jobs to worker, oldest first, counting an attempt on each."""
        now = utc(now)
        running: dict[str, int] = dict(
            self._c.execute(
                sa.select(_J.c.destination, sa.func.count())
                .where(_J.c.state == JobState.RUNNING.value, _J.c.lease_until >= now)
                .group_by(_J.c.destination)
            ).all()
        )
        candidates = self._c.execute(
            sa.select(_J)
            .where(_due(now), _J.c.kind.in_(list(kinds)), _not_blocked())
            .order_by(_J.c.pk)
            .limit(limit * 4 + 16)
            .with_for_update(skip_locked=True)
        ).all()
        chosen: list[sa.Row[Any]] = []
        for row in candidates:
            if len(chosen) >= limit:
                break
            if row.destination:
                cap = destination_limits.get(row.destination, default_destination_limit)
                if running.get(row.destination, 0) >= cap:
                    continue
                running[row.destination] = running.get(row.destination, 0) + 1
            chosen.append(row)
        until = now + lease
        claimed = []
        for row in chosen:
            self._c.execute(
                sa.update(_J)
                .where(_J.c.pk == row.pk)
                .values(
                    state=JobState.RUNNING.value,
                    attempts=_J.c.attempts + 1,
                    lease_owner=worker,
                    lease_until=until,
                    updated_at=now,
                )
            )
            claimed.append(
                replace(
                    _job(row),
                    state=JobState.RUNNING,
                    attempts=row.attempts + 1,
                    lease_owner=worker,
                    lease_until=until,
                )
            )
        return claimed

    def renew(self, ids: Collection[int], worker: str, until: datetime) -> None:
        """Extend the leases worker still holds."""
        if not ids:
            return
        self._c.execute(
            sa.update(_J)
            .where(
                _J.c.pk.in_(list(ids)),
                _J.c.lease_owner == worker,
                _J.c.state == JobState.RUNNING.value,
            )
            .values(lease_until=utc(until))
        )

    def _settle(self, job_id: int, worker: str, **values: Any) -> bool:
        result = self._c.execute(
            sa.update(_J)
            .where(
                _J.c.pk == job_id,
                _J.c.lease_owner == worker,
                _J.c.state == JobState.RUNNING.value,
            )
            .values(lease_owner="", lease_until=None, **values)
        )
        return result.rowcount == 1

    def finish(self, job_id: int, worker: str, now: datetime) -> bool:
        """Mark a leased job done; False when the lease was lost."""
        now = utc(now)
        return self._settle(
            job_id, worker, state=JobState.DONE.value, finished_at=now, updated_at=now
        )

    def retry(self, job_id: int, worker: str, error: str, run_at: datetime, now: datetime) -> bool:
        """Put a leased job back to pending until run_at, keeping the error."""
        return self._settle(
            job_id,
            worker,
            state=JobState.PENDING.value,
            run_at=utc(run_at),
            last_error=error,
            updated_at=utc(now),
        )

    def postpone(self, job_id: int, worker: str, run_at: datetime, now: datetime) -> bool:
        """Put a leased job back to pending until run_at without counting the attempt."""
        return self._settle(
            job_id,
            worker,
            state=JobState.PENDING.value,
            run_at=utc(run_at),
            attempts=_J.c.attempts - 1,
            updated_at=utc(now),
        )

    def bury(self, job_id: int, worker: str, error: str, now: datetime) -> bool:
        """Dead-letter a leased job with its last error."""
        now = utc(now)
        return self._settle(
            job_id,
            worker,
            state=JobState.DEAD.value,
            last_error=error,
            finished_at=now,
            updated_at=now,
        )

    def get(self, job_id: int) -> Job | None:
        """One job."""
        row = self._c.execute(sa.select(_J).where(_J.c.pk == job_id)).first()
        return _job(row) if row else None

    def has_job(
        self, ordering_key: str, *, unfinished_only: bool = True, pending_only: bool = False
    ) -> bool:
        """True when a job has this ordering key (only pending or running ones, by default;
        only pending ones with pending_only)."""
        if pending_only:
            states: tuple[str, ...] = (JobState.PENDING.value,)
        elif unfinished_only:
            states = _UNFINISHED
        else:
            states = ()
        return self._c.execute(_has_job(states), {"ordering_key": ordering_key}).first() is not None

    def list(
        self, *, state: JobState | None = None, kind: str | None = None, limit: int = 100
    ) -> Sequence[Job]:
        """Jobs, newest first."""
        query = sa.select(_J).order_by(_J.c.pk.desc()).limit(limit)
        if state is not None:
            query = query.where(_J.c.state == state.value)
        if kind is not None:
            query = query.where(_J.c.kind == kind)
        return [_job(row) for row in self._c.execute(query)]

    def replay(self, job_id: int, now: datetime) -> bool:
        """Make a dead-lettered job pending again with fresh attempts; False if not dead."""
        now = utc(now)
        result = self._c.execute(
            sa.update(_J)
            .where(_J.c.pk == job_id, _J.c.state == JobState.DEAD.value)
            .values(
                state=JobState.PENDING.value,
                attempts=0,
                run_at=now,
                finished_at=None,
                updated_at=now,
            )
        )
        return result.rowcount == 1

    def stats(self, now: datetime) -> QueueStats:
        """Depth, age and failures."""
        by_kind: dict[str, dict[str, int]] = {}
        by_state: dict[str, int] = {}
        rows = self._c.execute(
            sa.select(_J.c.kind, _J.c.state, sa.func.count()).group_by(_J.c.kind, _J.c.state)
        )
        for kind, state, count in rows:
            by_kind.setdefault(kind, {})[state] = count
            by_state[state] = by_state.get(state, 0) + count
        oldest = self._c.execute(
            sa.select(sa.func.min(_J.c.created_at)).where(_J.c.state == JobState.PENDING.value)
        ).scalar()
        failing: dict[str, int] = dict(
            self._c.execute(
                sa.select(_J.c.destination, sa.func.count())
                .where(_J.c.last_error != "", _J.c.state != JobState.DONE.value)
                .group_by(_J.c.destination)
            ).all()
        )
        oldest_at = aware_or_none(oldest)
        return QueueStats(
            by_state=by_state,
            by_kind=by_kind,
            oldest_pending_age=(now - oldest_at) if oldest_at else None,
            failing_destinations=failing,
        )


__all__ = ["SqlJobQueue"]
