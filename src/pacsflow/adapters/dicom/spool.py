"""Spool files for received C-STORE data sets that survive a full file system.

A data set larger than memory is written to a spool file while its PDUs arrive. When the file
system refuses a write (no space left), the association must go on: the rest of the data set
still has to be read off the socket and the C-STORE answered with a failure status (0xA700),
never an aborted association. A `SpoolFile` therefore never raises on write or close: it
removes its file, keeps the error, and swallows the rest of the data set; whoever answers
the C-STORE looks at `error`.

Both receive paths use it: the fast path (fastpath/session.py) directly, and pynetdicom through
`install()`, which makes pynetdicom's chunked C-STORE receive (`STORE_RECV_CHUNKED_DATASET`,
dimse_messages.py, checked against 3.0.4) open its temporary file here instead of with
`tempfile.NamedTemporaryFile`; the handler finds the file as `request._dataset_file`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, BinaryIO

import pynetdicom.dimse_messages

from pacsflow.domain.errors import StorageFull, TransientError

log = logging.getLogger(__name__)

_lock = threading.Lock()
_installed = False


class SpoolFile:
    """A file being written that turns a failed write into `error` instead of an exception."""

    def __init__(self, path: Path | None, file: BinaryIO | None = None) -> None:
        self.path = path
        self.error: OSError | None = None
        self._file = file
        if file is None and path is not None:
            try:
                self._file = path.open("xb")
            except OSError as exc:
                self._fail(exc)

    @classmethod
    def temporary(cls, suffix: str = ".dcm") -> SpoolFile:
        """A new spool file in the temporary directory (the data directory's tmp)."""
        try:
            fd, name = tempfile.mkstemp(suffix=suffix)
        except OSError as exc:
            spool = cls(None)
            spool._fail(exc)
            return spool
        return cls(Path(name), os.fdopen(fd, "wb"))

    @property
    def name(self) -> str:
        """The file's path as text ('' when it could not even be created)."""
        return str(self.path) if self.path is not None else ""

    @property
    def file(self) -> SpoolFile:
        """Itself (pynetdicom flushes `file.file`, as of a NamedTemporaryFile)."""
        return self

    def write(self, data: Any) -> int:
        """Append data; once a write has failed, data is read and dropped."""
        size = len(data)
        if self._file is not None:
            try:
                self._file.write(data)
            except OSError as exc:
                self._fail(exc)
        return size

    def flush(self) -> None:
        """Hand buffered bytes to the file system."""
        if self._file is not None:
            try:
                self._file.flush()
            except OSError as exc:
                self._fail(exc)

    def close(self) -> None:
        """Close the file; a failure to write the last buffered bytes counts as a failed write."""
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError as exc:
                self._fail(exc)

    def __del__(self) -> None:
        # As tempfile's own wrapper does: a spool file its reader never closed (pynetdicom's
        # C-GET SCU keeps the sub-operations' files open) is closed when it is dropped.
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()

    def _fail(self, exc: OSError) -> None:
        if self.error is None:
            log.warning("cannot spool a received object (%s): it will be refused", exc.strerror)
            self.error = exc
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):  # its buffer cannot be written: it is dropped
                file.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def refusal(error: OSError) -> TransientError:
    """Why a C-STORE whose data set could not be spooled is refused (StorageFull if no space)."""
    reason = f"cannot spool the object: {error.strerror or error}"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(reason)
    return TransientError(reason)


def _spool_file(*_: Any, suffix: str = ".dcm", **__: Any) -> SpoolFile:
    return SpoolFile.temporary(suffix)


def install() -> None:
    """Make pynetdicom spool received data sets into SpoolFiles (idempotent)."""
    global _installed
    with _lock:
        if not _installed:
            pynetdicom.dimse_messages.NamedTemporaryFile = _spool_file  # type: ignore[attr-defined,assignment]
            _installed = True


__all__ = ["SpoolFile", "install", "refusal"]
