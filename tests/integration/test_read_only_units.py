"""A read-only unit of work does not wait for a writer (SQLite WAL, deferred BEGIN)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pacsflow.adapters.db import SqlUnitOfWorkFactory, make_engine, upgrade
from pacsflow.adapters.db.engine import writer_lock


def test_a_reader_is_not_blocked_by_an_open_write_transaction(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    upgrade(url)
    uow = SqlUnitOfWorkFactory(make_engine(url))
    with uow() as writer:  # holds the write lock (BEGIN IMMEDIATE) until it ends
        writer.orders.list()
        started = time.monotonic()
        with uow(read_only=True) as reader:
            assert list(reader.orders.list()) == []
        assert time.monotonic() - started < 1.0  # a writer would wait up to 30 s here


def test_writers_queue_on_the_writer_lock_and_failures_release_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    upgrade(url)
    engine = make_engine(url)
    uow = SqlUnitOfWorkFactory(engine)
    lock = writer_lock(engine)
    assert lock is not None
    with uow() as writer:
        writer.orders.list()
        assert lock.locked()  # a second writer of this process queues here, not in SQLite
        second_started = threading.Event()
        second_done = threading.Event()

        def second() -> None:
            second_started.set()
            with uow() as other:
                other.orders.list()
            second_done.set()

        thread = threading.Thread(target=second)
        thread.start()
        second_started.wait(5)
        assert not second_done.wait(0.2)  # waits for the first writer
    thread.join(5)
    assert second_done.is_set()
    with pytest.raises(RuntimeError), uow():
        raise RuntimeError("a failed unit of work")
    assert not lock.locked()  # released on failure too
    with uow(read_only=True):
        assert not lock.locked()  # readers never take it
