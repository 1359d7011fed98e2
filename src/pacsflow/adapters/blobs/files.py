"""A blob store on the local filesystem: atomic renames and fsync before success."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

from pacsflow.domain.errors import InvalidInput, StorageFull, TransientError

log = logging.getLogger(__name__)

#: The errors of a file system (or a user's quota) that has no space left.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


class FileBlobStore:
    """Stores objects as files under a root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.staging = root / ".staging"
        self.staging.mkdir(exist_ok=True)
        self._made: set[Path] = set()

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") or "\\" in p for p in parts):
            raise InvalidInput(f"unsafe storage key {key!r}")
        return self.root.joinpath(*parts)

    def put_file(self, key: str, source: Path) -> int:
        """Durably store the file at source under key (moved when on the same filesystem).

        The file is renamed into place first and synced there: key is new and unique and is
        indexed only after this returns, so nothing reads it early, and on a journalling file
        system the one fsync of the file then commits its data and the rename together, which
        leaves the directory fsync (still done, as POSIX asks) next to nothing to write.
        From another file system it is copied in through the staging directory and source is
        removed once the copy is durable. On failure nothing is left under key or in staging.
        """
        target = self._path(key)
        placed = copied = False
        try:
            self._make_parent(target)
            try:
                os.replace(source, target)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                self._copy_in(source, target)
                copied = True
            placed = True
            size = _fsync_file(target)
            _fsync_dir(target.parent)
        except OSError as exc:
            if placed:
                target.unlink(missing_ok=True)
            raise _store_error(exc) from exc
        if copied:
            _remove_spooled(source)
        return size

    def _copy_in(self, source: Path, target: Path) -> None:
        """Copy source to target through a staging file (removed again if the copy fails)."""
        part = self.staging / (target.name + ".part")
        try:
            shutil.copyfile(source, part)
            os.replace(part, target)
        except BaseException:
            part.unlink(missing_ok=True)
            raise

    def put_bytes(self, key: str, data: bytes) -> int:
        """Durably store data under key: written in place, then the file and its directory
        fsynced (key is new and unique and indexed only after this returns). On failure the
        partly written file is removed."""
        target = self._path(key)
        created = False
        try:
            self._make_parent(target)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            created = True
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            _fsync_dir(target.parent)
            return len(data)
        except OSError as exc:
            if created:
                target.unlink(missing_ok=True)
            raise _store_error(exc) from exc

    def _make_parent(self, target: Path) -> None:
        """Create target's directory unless this store made it already (objects only grow)."""
        parent = target.parent
        if parent in self._made:
            return
        parent.mkdir(parents=True, exist_ok=True)
        if len(self._made) >= 4096:
            self._made.clear()
        self._made.add(parent)

    def open(self, key: str) -> BinaryIO:
        """Open a stored object for reading."""
        return self._path(key).open("rb")

    def local_path(self, key: str) -> Path | None:
        """The object's file."""
        return self._path(key)

    def exists(self, key: str) -> bool:
        """True when an object is stored under key."""
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove an object that was never indexed; absent keys are ignored."""
        self._path(key).unlink(missing_ok=True)


def _store_error(exc: OSError) -> TransientError:
    """Ours for a failed write: StorageFull when the file system has no space left."""
    reason = exc.strerror or str(exc)
    if exc.errno in _NO_SPACE:
        return StorageFull(f"cannot store object: {reason}")
    return TransientError(f"cannot store object: {reason}")


def _remove_spooled(source: Path) -> None:
    """Remove the spool file an object was copied from (the store holds the object now)."""
    try:
        source.unlink(missing_ok=True)
    except OSError as exc:  # stored all the same: the spool file is debris, not a failure
        log.warning("could not remove the spool file %s: %s", source, exc.strerror)


def _fsync_file(path: Path) -> int:
    """fsync a file; its size."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_blob_store(url: str) -> FileBlobStore:
    """The blob store a storage URL names (file:// only for now)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return FileBlobStore(Path(parsed.path))
    raise ValueError(
        f"storage URL {url!r} is not supported yet; use file:///path (S3 support is planned)"
    )


__all__ = ["FileBlobStore", "open_blob_store"]
