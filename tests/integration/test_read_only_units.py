"""A read-only unit of work does not wait for a writer (SQLite WAL, deferred BEGIN)."""

from __future__ import annotations

import time
from pathlib import Path

from pacsflow.adapters.db import SqlUnitOfWorkFactory, make_engine, upgrade


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
