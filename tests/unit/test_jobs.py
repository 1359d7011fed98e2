"""The durable job queue: backoff, leases, ordering, per-destination limits, dead letters."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pacsflow.adapters.db import SqlUnitOfWorkFactory, make_engine
from pacsflow.adapters.db.tables import metadata
from pacsflow.domain.errors import ConflictingState, PermanentError
from pacsflow.domain.jobs import Job, JobState, NewJob, RetryLater, RetryPolicy
from pacsflow.worker import Worker
from pacsflow.workflow.jobs import Jobs, UnknownJob
from tests.fakes import FixedClock, memory_uow

LEASE = timedelta(seconds=30)


@pytest.fixture(params=["sqlite", "postgresql"])
def uow(request: pytest.FixtureRequest) -> Iterator[SqlUnitOfWorkFactory]:
    """The queue on in-memory SQLite, and on PostgreSQL (tests/peers/postgres.py)."""
    if request.param == "sqlite":
        yield memory_uow()
        return
    engine = make_engine(request.getfixturevalue("pg_database_url"))
    metadata.create_all(engine)
    yield SqlUnitOfWorkFactory(engine)
    engine.dispose()


# -- RetryPolicy ------------------------------------------------------------------------------


@given(attempts=st.integers(1, 200), jitter=st.floats(0, 1))
def test_backoff_stays_between_half_and_the_full_capped_delay(attempts: int, jitter: float) -> None:
    policy = RetryPolicy(base=timedelta(seconds=2), cap=timedelta(minutes=10))
    full = min(policy.cap, policy.base * 2 ** min(attempts - 1, 40))
    assert full / 2 <= policy.delay(attempts, jitter) <= full


@given(attempts=st.integers(1, 30))
def test_backoff_never_shrinks_as_attempts_grow(attempts: int) -> None:
    policy = RetryPolicy()
    assert policy.delay(attempts + 1, 0.0) >= policy.delay(attempts, 0.0)


def test_a_delay_is_only_asked_after_a_failure_and_the_policy_must_make_sense() -> None:
    with pytest.raises(ValueError, match="follows a failed attempt"):
        RetryPolicy().delay(0, 0.5)
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="base <= cap"):
        RetryPolicy(base=timedelta(seconds=5), cap=timedelta(seconds=1))


def test_exhausted_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.is_exhausted(n) for n in (1, 2, 3, 4)] == [False, False, True, True]


# -- the SQL queue ----------------------------------------------------------------------------


def _claim(
    uow: SqlUnitOfWorkFactory,
    clock: FixedClock,
    worker: str = "w1",
    *,
    limit: int = 10,
    kinds: tuple[str, ...] = ("send",),
    limits: dict[str, int] | None = None,
    default_limit: int = 100,
) -> list[Job]:
    with uow() as u:
        jobs = u.jobs.claim(
            worker,
            clock.now(),
            LEASE,
            kinds=kinds,
            limit=limit,
            destination_limits=limits or {},
            default_destination_limit=default_limit,
        )
        u.commit()
    return jobs


def _enqueue(uow: SqlUnitOfWorkFactory, clock: FixedClock, *jobs: NewJob) -> list[int]:
    with uow() as u:
        ids = [u.jobs.enqueue(j, clock.now()) for j in jobs]
        u.commit()
    return ids


def test_an_enqueued_job_is_claimed_once_with_its_payload_and_an_attempt_counted(
    uow: SqlUnitOfWorkFactory,
) -> None:
    clock = FixedClock()
    [job_id] = _enqueue(uow, clock, NewJob("send", {"study": "1.2.3", "n": 4}))
    [job] = _claim(uow, clock)
    assert (job.id, job.payload, job.state, job.attempts) == (
        job_id,
        {"study": "1.2.3", "n": 4},
        JobState.RUNNING,
        1,
    )
    assert job.lease_owner == "w1"
    assert _claim(uow, clock, "w2") == []  # leased: nobody else gets it


def test_only_due_jobs_of_the_workers_kinds_are_claimed(uow: SqlUnitOfWorkFactory) -> None:
    clock = FixedClock()
    later = clock.now() + timedelta(minutes=5)
    _enqueue(uow, clock, NewJob("send", run_at=later), NewJob("other"))
    assert _claim(uow, clock) == []
    clock.advance(300)
    assert [j.kind for j in _claim(uow, clock)] == ["send"]


def test_an_expired_lease_makes_the_job_claimable_again_and_the_old_owner_loses_it(
    uow: SqlUnitOfWorkFactory,
) -> None:
    clock = FixedClock()
    _enqueue(uow, clock, NewJob("send"))
    [first] = _claim(uow, clock, "dead-worker")
    clock.advance(LEASE.total_seconds() + 1)
    [again] = _claim(uow, clock, "w2")
    assert (again.id, again.attempts, again.lease_owner) == (first.id, 2, "w2")
    with uow() as u:
        assert not u.jobs.finish(first.id, "dead-worker", clock.now())
        assert u.jobs.finish(first.id, "w2", clock.now())
        u.commit()
        assert u.jobs.get(first.id).state is JobState.DONE  # type: ignore[union-attr]


def test_a_renewed_lease_keeps_the_job(uow: SqlUnitOfWorkFactory) -> None:
    clock = FixedClock()
    _enqueue(uow, clock, NewJob("send"))
    [job] = _claim(uow, clock)
    clock.advance(20)
    with uow() as u:
        u.jobs.renew([job.id], "w1", clock.now() + LEASE)
        u.commit()
    clock.advance(20)  # 40 s after the claim, 20 s after the renewal
    assert _claim(uow, clock, "w2") == []


def test_jobs_with_one_ordering_key_run_one_at_a_time_in_order(uow: SqlUnitOfWorkFactory) -> None:
    clock = FixedClock()
    a, b, c = _enqueue(
        uow,
        clock,
        NewJob("send", ordering_key="study-1"),
        NewJob("send", ordering_key="study-1"),
        NewJob("send", ordering_key="study-2"),
    )
    assert [j.id for j in _claim(uow, clock)] == [a, c]
    with uow() as u:
        u.jobs.retry(a, "w1", "peer down", clock.now() + timedelta(seconds=10), clock.now())
        u.commit()
    assert _claim(uow, clock) == []  # b waits behind a's retry, even though b is due
    clock.advance(10)
    assert [j.id for j in _claim(uow, clock)] == [a]
    with uow() as u:
        u.jobs.bury(a, "w1", "gave up", clock.now())
        u.commit()
    assert [j.id for j in _claim(uow, clock)] == [b]  # a dead job stops blocking


def test_a_destination_gets_at_most_its_limit_of_running_jobs(uow: SqlUnitOfWorkFactory) -> None:
    clock = FixedClock()
    _enqueue(uow, clock, *[NewJob("send", destination="ORTHANC") for _ in range(5)])
    _enqueue(uow, clock, *[NewJob("send", destination="SLOW") for _ in range(3)])
    first = _claim(uow, clock, limits={"SLOW": 1}, default_limit=2)
    assert sorted(j.destination for j in first) == ["ORTHANC", "ORTHANC", "SLOW"]
    assert _claim(uow, clock, "w2", limits={"SLOW": 1}, default_limit=2) == []
    with uow() as u:
        u.jobs.finish(first[0].id, "w1", clock.now())
        u.commit()
    assert len(_claim(uow, clock, "w2", limits={"SLOW": 1}, default_limit=2)) == 1


def test_retry_keeps_the_error_and_postpone_gives_the_attempt_back(
    uow: SqlUnitOfWorkFactory,
) -> None:
    clock = FixedClock()
    [job_id] = _enqueue(uow, clock, NewJob("send"))
    _claim(uow, clock)
    with uow() as u:
        assert u.jobs.retry(job_id, "w1", "refused 0xA700", clock.now(), clock.now())
        u.commit()
    [job] = _claim(uow, clock)
    assert (job.attempts, job.last_error) == (2, "refused 0xA700")
    with uow() as u:
        assert u.jobs.postpone(job_id, "w1", clock.now(), clock.now())
        u.commit()
    [job] = _claim(uow, clock)
    assert job.attempts == 2


def test_stats_count_depth_age_and_failing_destinations(uow: SqlUnitOfWorkFactory) -> None:
    clock = FixedClock()
    ids = _enqueue(uow, clock, NewJob("send", destination="A"), NewJob("send", destination="B"))
    clock.advance(90)
    _enqueue(uow, clock, NewJob("fetch"))
    [first, _] = _claim(uow, clock)
    with uow() as u:
        u.jobs.retry(first.id, "w1", "down", clock.now() + timedelta(hours=1), clock.now())
        u.commit()
        stats = u.jobs.stats(clock.now())
    assert stats.by_state == {"pending": 2, "running": 1}
    assert stats.by_kind == {"send": {"pending": 1, "running": 1}, "fetch": {"pending": 1}}
    assert stats.depth == 3
    assert stats.oldest_pending_age == timedelta(seconds=90)
    assert stats.failing_destinations == {"A": 1}
    assert ids[0] == first.id


# -- the service and the worker -------------------------------------------------------------


class Recorder:
    """A handler that records what it ran and fails as told."""

    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.ran: list[tuple[int, int]] = []
        self.failures = list(failures or [])

    def __call__(self, job: Job) -> None:
        self.ran.append((job.id, job.attempts))
        if self.failures:
            raise self.failures.pop(0)


def _worker(
    uow: SqlUnitOfWorkFactory, clock: FixedClock, handler: Recorder, **kw: object
) -> Worker:
    return Worker(uow, clock, {"send": handler}, jitter=lambda: 0.0, **kw)  # type: ignore[arg-type]


def test_a_failing_job_is_retried_with_backoff_then_completes(uow: SqlUnitOfWorkFactory) -> None:
    clock = FixedClock()
    handler = Recorder([TimeoutError("no answer"), ConnectionRefusedError("down")])
    worker = _worker(uow, clock, handler, policy=RetryPolicy(base=timedelta(seconds=2)))
    [job_id] = _enqueue(uow, clock, NewJob("send"))
    assert worker.drain() == 1  # failed; next try 1 s later (half of 2 s, jitter 0)
    assert worker.drain() == 0
    clock.advance(1)
    assert worker.drain() == 1  # failed again; next after 2 s
    clock.advance(1)
    assert worker.drain() == 0
    clock.advance(1)
    assert worker.drain() == 1
    assert handler.ran == [(job_id, 1), (job_id, 2), (job_id, 3)]
    job = Jobs(uow, clock).get(job_id)
    assert job.state is JobState.DONE
    assert job.last_error == "ConnectionRefusedError: down"


def test_after_the_last_attempt_the_job_is_dead_lettered_and_can_be_replayed(
    uow: SqlUnitOfWorkFactory,
) -> None:
    clock = FixedClock()
    handler = Recorder([OSError("a"), OSError("b")])
    worker = _worker(uow, clock, handler, policy=RetryPolicy(max_attempts=2))
    [job_id] = _enqueue(uow, clock, NewJob("send"))
    worker.drain()
    clock.advance(3600)
    worker.drain()
    jobs = Jobs(uow, clock)
    dead = jobs.get(job_id)
    assert (dead.state, dead.attempts, dead.last_error) == (JobState.DEAD, 2, "OSError: b")
    assert [j.id for j in jobs.list(state=JobState.DEAD)] == [job_id]
    with pytest.raises(ConflictingState):
        jobs.replay(_enqueue(uow, clock, NewJob("other"))[0])  # not dead
    with pytest.raises(UnknownJob):
        jobs.replay(999)
    assert jobs.replay(job_id).state is JobState.PENDING
    assert worker.drain() == 1
    assert jobs.get(job_id).state is JobState.DONE


def test_a_permanent_error_dead_letters_at_once(uow: SqlUnitOfWorkFactory) -> None:
    clock = FixedClock()
    worker = _worker(uow, clock, Recorder([PermanentError("0xA900 refused for good")]))
    [job_id] = _enqueue(uow, clock, NewJob("send"))
    worker.drain()
    job = Jobs(uow, clock).get(job_id)
    assert (job.state, job.attempts) == (JobState.DEAD, 1)
    assert "refused for good" in job.last_error


def test_retry_later_postpones_without_using_an_attempt(uow: SqlUnitOfWorkFactory) -> None:
    clock = FixedClock()
    handler = Recorder([RetryLater(clock.now() + timedelta(seconds=30), "study not stable")])
    worker = _worker(uow, clock, handler, policy=RetryPolicy(max_attempts=1))
    [job_id] = _enqueue(uow, clock, NewJob("send"))
    worker.drain()
    job = Jobs(uow, clock).get(job_id)
    assert (job.state, job.attempts) == (JobState.PENDING, 0)
    clock.advance(30)
    worker.drain()
    assert Jobs(uow, clock).get(job_id).state is JobState.DONE


def test_a_job_whose_worker_keeps_dying_is_dead_lettered_not_run_forever(
    uow: SqlUnitOfWorkFactory,
) -> None:
    clock = FixedClock()
    policy = RetryPolicy(max_attempts=2)
    [job_id] = _enqueue(uow, clock, NewJob("send"))
    for _ in range(2):  # two workers claim it and die
        _claim(uow, clock, "doomed")
        clock.advance(LEASE.total_seconds() + 1)
    handler = Recorder()
    _worker(uow, clock, handler, policy=policy, lease=LEASE).drain()
    assert handler.ran == []
    assert Jobs(uow, clock).get(job_id).state is JobState.DEAD


def test_replay_dead_replays_every_dead_job_of_a_kind(uow: SqlUnitOfWorkFactory) -> None:
    clock = FixedClock()
    worker = _worker(uow, clock, Recorder([PermanentError("x"), PermanentError("y")]))
    _enqueue(uow, clock, NewJob("send"), NewJob("send"))
    worker.drain()
    jobs = Jobs(uow, clock)
    assert jobs.stats().by_state == {"dead": 2}
    assert jobs.replay_dead("send") == 2
    assert worker.drain() == 2
    assert jobs.stats().by_state == {"done": 2}


def test_worker_threads_run_every_job_exactly_once(tmp_path: object) -> None:
    from pathlib import Path

    from pacsflow.app import SystemClock

    engine = make_engine(f"sqlite:///{Path(str(tmp_path)) / 'q.db'}")
    metadata.create_all(engine)
    uow = SqlUnitOfWorkFactory(engine)
    clock = SystemClock()
    ran: list[int] = []
    lock = threading.Lock()
    done = threading.Event()

    def handler(job: Job) -> None:
        with lock:
            ran.append(int(job.payload["n"]))
            if len(ran) == 60:
                done.set()

    workers = [
        Worker(uow, clock, {"send": handler}, threads=2, poll_seconds=0.01) for _ in range(2)
    ]
    with uow() as u:
        for n in range(60):
            u.jobs.enqueue(NewJob("send", {"n": n}), clock.now())
        u.commit()
    for w in workers:
        w.start()
    try:
        assert done.wait(30)
    finally:
        for w in workers:
            w.stop()
    assert sorted(ran) == list(range(60))
    with uow(read_only=True) as u:
        assert u.jobs.stats(clock.now()).by_state == {"done": 60}
    engine.dispose()
