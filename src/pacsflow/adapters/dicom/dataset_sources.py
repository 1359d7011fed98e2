"""A received data set's bytes read forward in bounded memory: from a file, or inflated.

Deflated Explicit VR Little Endian (PS3.5 A.5) is inflated in bounded chunks as it is read.
Past 64 MiB inflated it may not inflate more than 100:1 (a deflate bomb: deflate reaches
about 1030:1 on zeros, at about 500 MB/s, and pydicom inflates a stored data set whole each
time it reads it later).
"""

from __future__ import annotations

import zlib
from typing import BinaryIO, Final, Protocol

from pacsflow.domain.errors import MalformedMessage

#: How much of the file one read brings in: a CT slice's header (and more) in one system call.
_WINDOW: Final = 16384
#: How much inflated data the deflate reader holds at most beyond what one read asks for.
_INFLATE_CHUNK: Final = 65536
#: Inflated size up to which any ratio is accepted (blank frames deflate about 1000:1).
_INFLATE_GRACE: Final = 64 * 1024 * 1024
#: The most a deflated data set may inflate beyond the grace, per byte received. pydicom's
#: samples deflate 1.4 to 65:1; 1000:1 would stop a bomb of pure zeros but not one at 900:1.
_MAX_INFLATE_RATIO: Final = 100


class ByteSource(Protocol):
    """The data set's bytes, read forward."""

    def read(self, size: int) -> bytes:
        """The next size bytes, fewer only at the end."""

    def unread(self, size: int) -> None:
        """Step back over the last size bytes just read."""

    def skip(self, size: int) -> int:
        """Move past size bytes; how many there were (fewer only at the end)."""

    @property
    def position(self) -> int:
        """How far the data set has been read (the end of a defined-length value is here)."""


class FileSource:
    """A file read through a small window; skipping a value only moves the position."""

    def __init__(self, fp: BinaryIO, start: int, size: int) -> None:
        self._fp = fp
        self._size = size
        self._pos = start
        self._window = b""
        self._window_at = start

    def read(self, size: int) -> bytes:
        pos = self._pos
        offset = pos - self._window_at
        if offset < 0 or offset + size > len(self._window):
            self._fp.seek(pos)
            self._window = self._fp.read(max(size, _WINDOW))
            self._window_at = pos
            offset = 0
        data = self._window[offset : offset + size]
        self._pos = pos + len(data)
        return data

    @property
    def position(self) -> int:
        """The offset in the file of the next byte to read."""
        return self._pos

    def unread(self, size: int) -> None:
        self._pos -= size

    def skip(self, size: int) -> int:
        skipped = max(0, min(size, self._size - self._pos))
        self._pos += skipped
        return skipped


class InflatingSource:
    """A raw deflate stream (PS3.5 A.5) inflated a chunk at a time."""

    def __init__(self, fp: BinaryIO) -> None:
        self._fp = fp
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._buffer = b""
        self._offset = 0
        #: inflated bytes dropped from the front of the buffer
        self._dropped = 0
        self._deflated_size = 0
        self._inflated_size = 0

    def _fill(self, size: int) -> None:
        """Inflate until size bytes are buffered ahead, or the stream ends."""
        while len(self._buffer) - self._offset < size and not self._inflater.eof:
            pending = self._inflater.unconsumed_tail
            if not pending:
                pending = self._fp.read(_INFLATE_CHUNK)
                self._deflated_size += len(pending)
            if not pending:
                return
            try:
                more = self._inflater.decompress(pending, _INFLATE_CHUNK)
            except zlib.error as exc:
                raise MalformedMessage(f"deflated data set is corrupt: {exc}") from exc
            self._inflated_size += len(more)
            if (
                self._inflated_size > _INFLATE_GRACE
                and self._inflated_size > _MAX_INFLATE_RATIO * self._deflated_size
            ):
                raise MalformedMessage(
                    f"deflated data set inflates over {_MAX_INFLATE_RATIO}:1 (a deflate bomb)"
                )
            self._dropped += self._offset
            self._buffer = self._buffer[self._offset :] + more
            self._offset = 0

    def read(self, size: int) -> bytes:
        self._fill(size)
        data = self._buffer[self._offset : self._offset + size]
        self._offset += len(data)
        return data

    @property
    def position(self) -> int:
        """Inflated bytes read so far."""
        return self._dropped + self._offset

    def unread(self, size: int) -> None:
        if size > self._offset:  # inflated bytes already dropped
            raise MalformedMessage("deflated data set: a value overruns its length")
        self._offset -= size

    def skip(self, size: int) -> int:
        skipped = 0
        while skipped < size:
            self._fill(min(size - skipped, _INFLATE_CHUNK))
            step = min(size - skipped, len(self._buffer) - self._offset)
            if step == 0:
                break
            self._offset += step
            skipped += step
        return skipped

    def check_ended(self) -> None:
        """Raise unless the deflate stream itself ended (its last block was received)."""
        self._fill(1)
        if not self._inflater.eof:
            raise MalformedMessage("deflated data set is cut short: its stream does not end")


__all__ = ["ByteSource", "FileSource", "InflatingSource"]
