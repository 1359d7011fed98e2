"""One fast-path association: who called, its socket and read buffer, the object arriving."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom.presentation import PresentationContext

from pacsflow.adapters.dicom.fastpath.wire import PeerClosed, ProtocolError
from pacsflow.adapters.dicom.spool import SpoolFile

#: Data set bytes are moved from the socket to the file in chunks of at most this size, so
#: memory stays bounded whatever PDU length the peer announces.
_CHUNK = 1 << 18
#: Objects up to this size are received into memory and written once, in place, when
#: stored; larger ones are spooled to a file while they arrive (memory stays bounded).
_KEEP = 1 << 20


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent an object: the calling AE title and address of one association."""

    ae_title: str
    address: str
    #: Unique among the associations open at the same time.
    association: int


@dataclass(frozen=True, slots=True)
class ReceivedObject:
    """A C-STORE data set received into a Part 10 file."""

    #: The Part 10 file, when the object was spooled to disk (large, or pynetdicom's path).
    path: Path | None
    transfer_syntax: str
    sop_class_uid: str
    sop_instance_uid: str
    #: The Part 10 file's bytes, when the object was small enough to be kept in memory.
    data: bytes | None = None
    #: Why the data set could not be spooled (disk full): it was read and dropped.
    spool_error: OSError | None = None


#: Stores a received object; returns the status (an int, or a Dataset with Status and an
#: Error Comment). On success it has taken the spooled file (moved it into the store).
StoreHandler = Callable[[Caller, ReceivedObject], "int | Dataset"]
#: Called once when an association served here ends (released, aborted or broken).
ClosedHandler = Callable[[Caller], None]


@dataclass(slots=True)
class Pending:
    """A C-STORE request whose data set is being received."""

    context_id: int
    message_id: int
    sop_class: str
    sop_instance: str
    transfer_syntax: str


class Session:
    """One association's socket, its read buffer and receive state."""

    def __init__(self, sock: socket.socket, caller: Caller) -> None:
        self.sock = sock
        self.caller = caller
        self.established = False
        self.contexts: dict[int, PresentationContext] = {}
        self.peer_max_pdu = 0
        self.command = bytearray()
        self.pending: Pending | None = None
        self.file: SpoolFile | None = None
        self.path: Path | None = None
        #: The object's bytes while it is small enough to keep in memory (else None).
        self.kept: bytearray | None = None
        self.spool: Callable[[], Path] | None = None
        self._buffer = bytearray(_CHUNK)
        self._view = memoryview(self._buffer)
        self._start = self._end = 0

    def read(self, n: int) -> bytes:
        """Exactly n bytes from the peer (n at most the buffer's size)."""
        self._fill(n)
        data = bytes(self._view[self._start : self._start + n])
        self._start += n
        return data

    def _fill(self, n: int) -> None:
        """Buffer at least n bytes; what else has arrived is buffered too (fewer recv calls)."""
        if self._end - self._start >= n:
            return
        if n > len(self._buffer):
            raise ProtocolError(f"{n} bytes asked where at most {len(self._buffer)} are read")
        if self._start:
            held = self._end - self._start
            self._buffer[:held] = self._view[self._start : self._end]
            self._start, self._end = 0, held
        while self._end < n:
            got = self.sock.recv_into(self._view[self._end :])
            if got == 0:
                raise PeerClosed
            self._end += got

    def receive_data(self, n: int) -> None:
        """Take the next n bytes of the object's data set from the peer."""
        while n > 0:
            if self._start == self._end:
                self._start = self._end = 0
                got = self.sock.recv_into(self._view)
                if got == 0:
                    raise PeerClosed
                self._end = got
            take = min(n, self._end - self._start)
            self._append(self._view[self._start : self._start + take])
            self._start += take
            n -= take

    def _append(self, chunk: memoryview) -> None:
        """Keep an object in memory up to 1 MiB; past that, spool it to its file."""
        kept = self.kept
        if kept is not None and len(kept) + len(chunk) <= _KEEP:
            kept += chunk
            return
        if self.file is None:
            assert self.spool is not None
            self.path = self.spool()
            self.file = SpoolFile(self.path)  # a full disk drops the rest: refused, not aborted
            self.file.write(kept or b"")
            self.kept = None
        self.file.write(chunk)

    def begin_object(self, file_meta: bytes, spool: Callable[[], Path]) -> None:
        """Start receiving an object whose File Meta Information is file_meta."""
        self.kept = bytearray(file_meta)
        self.spool = spool

    def end_object(self) -> tuple[Path | None, bytes | None, OSError | None]:
        """The received object: its spooled file, or its bytes; why it could not be spooled."""
        path, file, kept = self.path, self.file, self.kept
        self.path, self.file, self.kept = None, None, None
        if file is not None:
            file.close()
        error = file.error if file is not None else None
        return path, None if kept is None else bytes(kept), error

    def discard_partial(self) -> None:
        """Remove the file of an object whose data set never completed."""
        path, _, _ = self.end_object()
        if path is not None:
            path.unlink(missing_ok=True)

    def send_command(self, context_id: int, command: bytes) -> None:
        """Send a command set in as many P-DATA-TF PDUs as the peer's maximum length needs."""
        limit = self.peer_max_pdu - 6 if self.peer_max_pdu > 6 else len(command)
        out = bytearray()
        for start in range(0, len(command), max(limit, 1)):
            chunk = command[start : start + limit]
            last = start + limit >= len(command)
            item = (len(chunk) + 2).to_bytes(4, "big") + bytes((context_id, 0x03 if last else 0x01))
            out += b"\x04\x00" + (len(item) + len(chunk)).to_bytes(4, "big") + item + chunk
        self.sock.sendall(out)


__all__ = ["Caller", "ClosedHandler", "Pending", "ReceivedObject", "Session", "StoreHandler"]
