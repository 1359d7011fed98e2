"""The job loop: claim, run, commit; retry with backoff or dead-letter.

Each worker thread claims one due job under a lease, runs its handler outside any
transaction (handlers talk to peers), then settles it in a new transaction: done, back to
pending with a backoff delay, or dead-lettered with the last error. A keeper thread renews
the leases of running jobs, so a long transfer keeps its job while a killed worker's lease
runs out and another worker (on this node or another) takes the job again.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta

from pacsflow.domain.errors import PermanentError
from pacsflow.domain.jobs import Job, RetryLater, RetryPolicy
from pacsflow.workflow.ports.clock import Clock
from pacsflow.workflow.ports.uow import UnitOfWorkFactory

log = logging.getLogger(__name__)

Handler = Callable[[Job], None]

_MAX_ERROR = 2000


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text[:_MAX_ERROR]


class Worker:
    """Runs the jobs of the kinds it has handlers for, on `threads` threads."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        handlers: Mapping[str, Handler],
        *,
        threads: int = 2,
        lease: timedelta = timedelta(seconds=60),
        poll_seconds: float = 0.25,
        policy: RetryPolicy | None = None,
        destination_limits: Mapping[str, int] | None = None,
        default_destination_limit: int = 2,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._handlers = dict(handlers)
        self._threads_wanted = threads
        self._lease = lease
        self._poll = poll_seconds
        self.policy = policy or RetryPolicy()
        self._limits = dict(destination_limits or {})
        self._default_limit = default_destination_limit
        self._jitter = jitter
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._running: set[int] = set()
        self._running_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker threads and the lease keeper (returns at once)."""
        if not self._handlers or self._threads:
            return
        self._stop.clear()
        for i in range(self._threads_wanted):
            thread = threading.Thread(target=self._loop, name=f"pacsflow-job-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        keeper = threading.Thread(target=self._keep_leases, name="pacsflow-leases", daemon=True)
        keeper.start()
        self._threads.append(keeper)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; wait for running jobs up to timeout (their leases then run out)."""
        self._stop.set()
        self.wake()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def wake(self) -> None:
        """Look for due jobs now instead of at the next poll."""
        with self._wake:
            self._wake.notify_all()

    # -- one job ----------------------------------------------------------------------------

    def run_once(self) -> bool:
        """Claim and run one due job; False when none was due."""
        kinds = self._handlers.keys()
        with self._uow(read_only=True) as uow:
            if not uow.jobs.due(self._clock.now(), kinds):
                return False
        with self._uow() as uow:
            jobs = uow.jobs.claim(
                self.name,
                self._clock.now(),
                self._lease,
                kinds=kinds,
                limit=1,
                destination_limits=self._limits,
                default_destination_limit=self._default_limit,
            )
            uow.commit()
        if not jobs:
            return False
        self._run(jobs[0])
        return True

    def drain(self, max_jobs: int = 10_000) -> int:
        """Run due jobs in this thread until none is due (tests, CLI); how many ran."""
        count = 0
        while count < max_jobs and self.run_once():
            count += 1
        return count

    def _run(self, job: Job) -> None:
        if job.attempts > self.policy.max_attempts:
            # Claimed again after its lease ran out more often than it may fail: its worker
            # died on it each time. Dead-letter it instead of killing the next worker too.
            self._settle(job, PermanentError("the worker running it stopped every time"))
            return
        with self._running_lock:
            self._running.add(job.id)
        try:
            self._handlers[job.kind](job)
        except Exception as exc:  # noqa: BLE001 - any failure is the job's, kept on the job
            self._settle(job, exc)
        else:
            self._settle(job, None)
        finally:
            with self._running_lock:
                self._running.discard(job.id)

    def _settle(self, job: Job, error: Exception | None) -> None:
        now = self._clock.now()
        with self._uow() as uow:
            if error is None:
                kept = uow.jobs.finish(job.id, self.name, now)
            elif isinstance(error, RetryLater):
                kept = uow.jobs.postpone(job.id, self.name, error.at, now)
            elif isinstance(error, PermanentError) or self.policy.is_exhausted(job.attempts):
                kept = uow.jobs.bury(job.id, self.name, _describe(error), now)
                log.warning(
                    "job %d (%s) dead-lettered after %d attempt(s): %s",
                    job.id,
                    job.kind,
                    job.attempts,
                    error,
                )
            else:
                delay = self.policy.delay(job.attempts, self._jitter())
                kept = uow.jobs.retry(job.id, self.name, _describe(error), now + delay, now)
                log.info(
                    "job %d (%s) attempt %d failed, retry in %.1f s: %s",
                    job.id,
                    job.kind,
                    job.attempts,
                    delay.total_seconds(),
                    error,
                )
            uow.commit()
        if not kept:
            log.warning("job %d: lease lost before it ended; another worker runs it", job.id)

    # -- threads ------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self.run_once()
            except Exception:  # the store is down: wait and try again, never die
                log.exception("job worker: claiming failed")
                ran = False
            if not ran:
                with self._wake:
                    self._wake.wait(self._poll)

    def _keep_leases(self) -> None:
        interval = max(self._lease.total_seconds() / 3, 0.05)
        while not self._stop.wait(interval):
            with self._running_lock:
                ids = set(self._running)
            if not ids:
                continue
            try:
                with self._uow() as uow:
                    uow.jobs.renew(ids, self.name, self._clock.now() + self._lease)
                    uow.commit()
            except Exception:
                log.exception("job worker: renewing leases failed")


__all__ = ["Handler", "Worker"]
