"""Where received objects are stored."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Protocol


class BlobStore(Protocol):
    """Immutable object storage for received files."""

    def put_file(self, key: str, source: Path) -> int:
        """Durably store the file at source under key, taking source (moved when possible,
        else copied and removed); its size. On failure nothing is left under key, and
        StorageFull says that no space is left."""
        ...

    def put_bytes(self, key: str, data: bytes) -> int:
        """Durably store data under key; its size (on failure nothing is left under key)."""
        ...

    def open(self, key: str) -> BinaryIO:
        """Open a stored object for reading."""
        ...

    def local_path(self, key: str) -> Path | None:
        """A local filesystem path for the object, when the store has one."""
        ...

    def exists(self, key: str) -> bool:
        """True when an object is stored under key."""
        ...

    def delete(self, key: str) -> None:
        """Remove an object that was never indexed (an orphan); absent keys are ignored."""
        ...


__all__ = [
    "BlobStore",
]
