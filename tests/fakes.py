"""Test doubles for the workflow's ports."""

from __future__ import annotations

import io
import threading
import time
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import BinaryIO

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from pacsflow.adapters.db import SqlUnitOfWorkFactory
from pacsflow.adapters.db.tables import metadata


class FixedClock:
    """A clock that moves only when told."""

    def __init__(self, start: datetime | None = None, zone: tzinfo = UTC) -> None:
        self.current = start or datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
        self.zone = zone

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class RunningClock:
    """A clock that starts at a chosen instant and then runs (a node's workers need time to
    pass: leases, backoff); tests move it on with advance() instead of waiting."""

    def __init__(self, start: datetime, zone: tzinfo = UTC) -> None:
        if start.tzinfo is None:
            raise ValueError("the start instant needs a UTC offset")
        self.start = start.astimezone(UTC)
        self.zone = zone
        self._origin = time.monotonic()
        self._skipped = timedelta(0)
        self._frozen: datetime | None = None
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            if self._frozen is not None:
                return self._frozen + self._skipped
            skipped = self._skipped
        return self.start + skipped + timedelta(seconds=time.monotonic() - self._origin)

    def freeze(self) -> None:
        """Stop the clock where it is (a test that needs every event at one known instant,
        whatever the machine's speed); advance() still moves it."""
        frozen = self.now()
        with self._lock:
            self._frozen, self._skipped = frozen, timedelta(0)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._skipped += timedelta(seconds=seconds)


class InMemoryBlobStore:
    """Blobs held in a dict; put_file reads and keeps the bytes."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_file(self, key: str, source: Path) -> int:
        data = source.read_bytes()
        self.objects[key] = data
        return len(data)

    def put_bytes(self, key: str, data: bytes) -> int:
        self.objects[key] = data
        return len(data)

    def open(self, key: str) -> BinaryIO:
        return io.BytesIO(self.objects[key])

    def local_path(self, key: str) -> Path | None:
        return None

    def exists(self, key: str) -> bool:
        return key in self.objects

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)


def memory_uow() -> SqlUnitOfWorkFactory:
    """Units of work on a fresh in-memory SQLite database (no file, no network)."""
    engine = sa.create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    metadata.create_all(engine)
    return SqlUnitOfWorkFactory(engine)
