"""Engines for the embedded SQLite default and for PostgreSQL at scale."""

from __future__ import annotations

import threading
import weakref
from typing import Any

import sqlalchemy as sa

#: Execution option marking a connection whose transaction only reads.
READ_ONLY = "pacsflow_read_only"

#: One writer at a time per SQLite engine, queued in this process (see writer_lock).
_WRITER_LOCKS: weakref.WeakKeyDictionary[sa.Engine, threading.Lock] = weakref.WeakKeyDictionary()


def writer_lock(engine: sa.Engine) -> threading.Lock | None:
    """The lock a write transaction on this engine holds; None when the database needs none.

    SQLite has one writer. A second BEGIN IMMEDIATE finds the database locked and SQLite's
    busy handler then sleeps 1, 2, 5, 10 ms... before it tries again, so with several
    associations storing at once most of their time went to those sleeps. Writers of this
    process queue on this lock instead and start the moment the previous one commits; other
    processes (the CLI) still meet SQLite's busy handler. PostgreSQL needs no lock.
    """
    return _WRITER_LOCKS.get(engine)


def make_engine(url: str) -> sa.Engine:
    """An engine for url; SQLite gets WAL, full fsync and write transactions that lock early."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=16,
            max_overflow=16,
        )
        _tune_sqlite(engine)
        _WRITER_LOCKS[engine] = threading.Lock()
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _tune_sqlite(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's BEGIN below be the only transaction control (pysqlite quirk).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk when it returns, so an ACK never outruns durability.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # IMMEDIATE takes the write lock up front: no deadlock on lock upgrade between threads.
        # A read-only unit of work begins DEFERRED: in WAL mode it never waits for writers.
        is_read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if is_read_only else "BEGIN IMMEDIATE")


__all__ = ["READ_ONLY", "make_engine", "writer_lock"]
