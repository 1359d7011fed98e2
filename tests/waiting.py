"""Waiting on a node's work: that something did not happen is proven by the job that would
have done it having finished, not by a sleep."""

from __future__ import annotations

import time
from collections.abc import Callable

from pacsflow.app import Pacsflow
from pacsflow.domain.jobs import JobState


def wait_until(predicate: Callable[[], bool], timeout: float = 20, interval: float = 0.05) -> bool:
    """Poll predicate every interval seconds until it holds or timeout seconds pass; whether
    it held."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def nothing_due(node: Pacsflow) -> bool:
    """No job of the node is running and none is waiting that is due by the node's clock."""
    now = node.clock.now()
    return all(
        job.state in (JobState.DONE, JobState.DEAD)
        or (job.state is JobState.PENDING and job.run_at > now)
        for job in node.jobs.list(limit=100_000)
    )


def wait_settled(node: Pacsflow, timeout: float = 20) -> None:
    """Wait until the node has done all the work that is due (the jobs finished)."""
    assert wait_until(lambda: nothing_due(node), timeout), node.jobs.list()
