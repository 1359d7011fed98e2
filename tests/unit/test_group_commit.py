"""GroupCommit: pieces of work that arrive together share a transaction, failures stay apart."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from pacsflow.workflow.group_commit import GroupCommit


class FakeUnitOfWork:
    """Writes become visible in `committed` only on commit; a serialising writer lock."""

    def __init__(self, db: FakeDatabase) -> None:
        self.db = db
        self.pending: list[str] = []

    def __enter__(self) -> FakeUnitOfWork:
        self.db.writer.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.pending.clear()  # rolled back unless committed
        self.db.writer.release()

    def write(self, value: str) -> None:
        self.pending.append(value)

    def commit(self) -> None:
        self.db.committed.extend(self.pending)
        self.db.commits += 1
        self.pending.clear()


class FakeDatabase:
    def __init__(self) -> None:
        self.committed: list[str] = []
        self.commits = 0
        self.writer = threading.Lock()

    def __call__(self, *, read_only: bool = False) -> Any:
        return FakeUnitOfWork(self)


def wait_queued(rounds: GroupCommit, n: int) -> None:
    """Wait until n callers wait for the next round (fail after 5 s rather than hang)."""
    deadline = time.monotonic() + 5
    while len(rounds._queue) < n:
        assert time.monotonic() < deadline, f"{len(rounds._queue)} of {n} callers queued"
        time.sleep(0.001)
    assert len(rounds._queue) == n


def test_a_caller_alone_commits_its_own_work() -> None:
    db = FakeDatabase()
    rounds = GroupCommit(db)

    def work(uow: Any) -> int:
        uow.write("a")
        return 7

    assert rounds.run(work) == 7
    assert db.committed == ["a"]
    assert (db.commits, rounds.rounds, rounds.pieces) == (1, 1, 1)


def test_callers_arriving_together_share_a_commit_and_get_their_own_results() -> None:
    db = FakeDatabase()
    rounds = GroupCommit(db)
    first_running = threading.Event()
    others_queued = threading.Event()
    results: dict[int, int] = {}

    def work_of(i: int) -> Any:
        def work(uow: Any) -> int:
            uow.write(f"w{i}")
            if i == 0:  # the first leader waits until every other caller is queued
                first_running.set()
                others_queued.wait(5)
            return i * 10

        return work

    def caller(i: int) -> None:
        results[i] = rounds.run(work_of(i))

    threads = [threading.Thread(target=caller, args=(0,))]
    threads[0].start()
    first_running.wait(5)
    threads += [threading.Thread(target=caller, args=(i,)) for i in range(1, 8)]
    for t in threads[1:]:
        t.start()
    wait_queued(rounds, 7)
    others_queued.set()
    for t in threads:
        t.join(5)
    assert results == {i: i * 10 for i in range(8)}
    assert sorted(db.committed) == sorted(f"w{i}" for i in range(8))
    assert rounds.pieces == 8
    assert rounds.rounds == 2  # the first alone, then the seven that queued meanwhile
    assert db.commits == 2


def test_a_failing_piece_fails_alone_and_its_writes_are_not_committed() -> None:
    db = FakeDatabase()
    rounds = GroupCommit(db)
    leader_running = threading.Event()
    queued = threading.Event()
    outcomes: dict[str, object] = {}

    def slow(uow: Any) -> str:
        uow.write("slow")
        leader_running.set()
        queued.wait(5)
        return "slow"

    def good(uow: Any) -> str:
        uow.write("good")
        return "good"

    def bad(uow: Any) -> str:
        uow.write("bad-partial")
        raise ValueError("refused")

    def caller(name: str, work: Any) -> None:
        try:
            outcomes[name] = rounds.run(work)
        except ValueError as exc:
            outcomes[name] = exc

    lead = threading.Thread(target=caller, args=("slow", slow))
    lead.start()
    leader_running.wait(5)
    rest = [
        threading.Thread(target=caller, args=("good", good)),
        threading.Thread(target=caller, args=("bad", bad)),
    ]
    for t in rest:
        t.start()
    wait_queued(rounds, 2)
    queued.set()
    for t in [lead, *rest]:
        t.join(5)
    assert outcomes["slow"] == "slow"
    assert outcomes["good"] == "good"
    assert isinstance(outcomes["bad"], ValueError)
    assert sorted(db.committed) == ["good", "slow"]


def test_an_error_of_a_caller_alone_is_raised_to_it() -> None:
    rounds = GroupCommit(FakeDatabase())

    def bad(uow: Any) -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        rounds.run(bad)
    assert rounds.run(lambda uow: 1) == 1  # and the next caller is served
