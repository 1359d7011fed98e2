"""A C-STORE receive path for storage-only associations, beside pynetdicom.

pynetdicom runs every association through its general machinery: a DUL thread decoding each
PDU into objects and events, a state machine, a DIMSE provider, an Association thread that
polls them, and a handler call per message. For a C-STORE that costs more CPU than the store
itself (about 1.4 ms per small object on our 2-core machine), and C-STORE is what modalities
send all day. This module serves the associations that contain nothing but storage (and
Verification) in one thread per association that reads PDUs straight from the socket and
streams the data set into a file; everything else stays with pynetdicom.

How an association gets here: `DivertingServer` is pynetdicom's threaded association server,
with one change. Before pynetdicom reads anything from a new connection, the A-ASSOCIATE-RQ is
*peeked* (MSG_PEEK: the bytes stay in the socket). When every proposed abstract syntax is a
storage SOP class or Verification and the request asks for nothing this path does not
implement (SCP/SCU role selection, user identity, a TLS connection), the association is served
here; otherwise the untouched connection goes to pynetdicom as before. Negotiation reuses
pynetdicom's own pieces (PDU decoding and encoding, `negotiate_as_acceptor`, the AE's
supported contexts, AE title rules, association limit), so both paths accept exactly the same.

The received object is written like pynetdicom's `STORE_RECV_CHUNKED_DATASET` does (preamble,
File Meta Information from `create_file_meta`, then the data set as received) and handed to
the same handler; success is still answered only after that handler returns (durably stored
and indexed).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE, PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    AsynchronousOperationsWindowNegotiation,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
)
from pynetdicom.presentation import PresentationContext, negotiate_as_acceptor
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from pacsflow.adapters.dicom import negotiation
from pacsflow.adapters.dicom.spool import SpoolFile

log = logging.getLogger(__name__)

APPLICATION_CONTEXT_NAME = "1.2.840.10008.3.1.1.1"
STORAGE_SOP_CLASSES = frozenset(negotiation.STORAGE_SOP_CLASSES) | {str(Verification)}

#: PDU types (PS3.8 9.3).
_ASSOCIATE_RQ, _P_DATA, _RELEASE_RQ, _ABORT = 0x01, 0x04, 0x05, 0x07
_RELEASE_RP = b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00"
#: A-ABORT from the service provider, reason not specified (PS3.8 9.3.8).
_ABORT_PDU = b"\x07\x00\x00\x00\x00\x04\x00\x00\x02\x00"
#: DIMSE command fields (PS3.7 E.1).
_C_STORE_RQ, _C_ECHO_RQ, _C_STORE_RSP, _C_ECHO_RSP = 0x0001, 0x0030, 0x8001, 0x8030
_NO_DATA_SET = 0x0101
_UNABLE_TO_PROCESS = 0xC001
#: An A-ASSOCIATE-RQ larger than this is left to pynetdicom (128 contexts fit many times).
_MAX_RQ = 1 << 20
#: A command set is a few hundred bytes; anything far larger is not a command.
_MAX_COMMAND = 1 << 16
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


class ProtocolError(Exception):
    """The peer broke the upper layer protocol: the association is aborted."""


class _Closed(Exception):
    """The peer closed the connection."""


class FastStore:
    """Serves storage-only associations; `serve` says whether it took the connection."""

    def __init__(
        self,
        ae: AE,
        store: StoreHandler,
        closed: ClosedHandler,
        *,
        other_associations: Callable[[], int] = lambda: 0,
    ) -> None:
        self._ae = ae
        self._store = store
        self._closed = closed
        self._others = other_associations
        self._lock = threading.Lock()
        self._live: dict[int, socket.socket] = {}
        #: Associations taken by this path since start (for tests and diagnostics).
        self.served = 0

    @property
    def active(self) -> int:
        """Associations being served here now."""
        with self._lock:
            return len(self._live)

    def abort_all(self) -> None:
        """Abort every association served here (the listener is stopping)."""
        with self._lock:
            live = list(self._live.values())
        for sock in live:
            _send_quietly(sock, _ABORT_PDU)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # -- taking a connection ----------------------------------------------------------------

    def serve(self, sock: socket.socket, address: Any) -> bool:
        """Serve the connection here if its association is storage-only; False: not touched."""
        rq = self._peek_request(sock)
        if rq is None:
            return False
        raw, primitive = rq
        if not self._eligible(primitive):
            return False
        # Taken: consume the request pynetdicom would otherwise have read.
        _read_exact(sock, len(raw))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        host = str(address[0]) if isinstance(address, tuple) else str(address)
        session = _Session(sock, Caller(primitive.calling_ae_title.strip(), host, id(sock)))
        with self._lock:
            self._live[id(sock)] = sock
            self.served += 1
        try:
            if self._negotiate(session, primitive):
                self._run(session)
        except (_Closed, TimeoutError, ConnectionError):
            log.debug("association from %s ended by the connection", session.caller.ae_title)
        except ProtocolError as exc:
            log.warning("association from %s aborted: %s", session.caller.ae_title, exc)
            _send_quietly(sock, _ABORT_PDU)
        except Exception:  # one association's failure never takes the listener with it
            log.exception("association from %s failed", session.caller.ae_title)
            _send_quietly(sock, _ABORT_PDU)
        finally:
            session.discard_partial()
            _drain(sock)
            with self._lock:
                self._live.pop(id(sock), None)
            if session.established:
                try:
                    self._closed(session.caller)
                except Exception:
                    log.exception("association close handler failed")
        return True

    def _peek_request(self, sock: socket.socket) -> tuple[bytes, A_ASSOCIATE] | None:
        """The A-ASSOCIATE-RQ at the head of the socket, left unread; None if not one."""
        if type(sock) is not socket.socket:  # TLS (SSLSocket cannot peek): pynetdicom's
            return None
        timeout = self._ae.acse_timeout
        sock.settimeout(timeout if timeout is not None else 30)
        try:
            head = _peek_exact(sock, 6)
            if head is None or head[0] != _ASSOCIATE_RQ:
                return None
            length = int.from_bytes(head[2:6], "big")
            if length > _MAX_RQ:
                return None
            raw = _peek_exact(sock, 6 + length)
            if raw is None:
                return None
            pdu = A_ASSOCIATE_RQ()
            pdu.decode(raw)
            return raw, pdu.to_primitive()
        except Exception:  # noqa: BLE001 - undecodable: pynetdicom answers whatever this is
            return None
        finally:
            sock.settimeout(None)

    def _eligible(self, rq: A_ASSOCIATE) -> bool:
        contexts = rq.presentation_context_definition_list
        if not contexts:
            return False
        if any(str(cx.abstract_syntax) not in STORAGE_SOP_CLASSES for cx in contexts):
            return False
        allowed = (
            MaximumLengthNotification,
            ImplementationClassUIDNotification,
            ImplementationVersionNameNotification,
            AsynchronousOperationsWindowNegotiation,  # answered with the default window
            SOPClassExtendedNegotiation,  # pynetdicom answers none without a handler
            SOPClassCommonExtendedNegotiation,  # no response item exists
        )
        return all(isinstance(item, allowed) for item in rq.user_information)

    # -- negotiation --------------------------------------------------------------------------

    def _negotiate(self, session: _Session, rq: A_ASSOCIATE) -> bool:
        """Accept or reject like pynetdicom's ACSE would; True when accepted."""
        ae = self._ae
        calling = rq.calling_ae_title.strip()
        authorised = [s.strip() for s in ae.require_calling_aet]
        reject: tuple[int, int, int] | None = None
        if authorised and calling not in authorised:
            reject = (0x01, 0x01, 0x03)  # calling AE title not recognised
        if ae.require_called_aet and rq.called_ae_title.strip() != ae.ae_title.strip():
            reject = (0x01, 0x01, 0x07)  # called AE title not recognised
        if self.active + self._others() > ae.maximum_associations:
            reject = (0x02, 0x03, 0x02)  # local limit exceeded
        if reject is not None:
            log.info("rejecting association from %s: %s", calling, reject)
            prim = A_ASSOCIATE()
            prim.application_context_name = UID(APPLICATION_CONTEXT_NAME)
            prim.calling_ae_title = rq.calling_ae_title
            prim.called_ae_title = rq.called_ae_title
            prim.result, prim.result_source, prim.diagnostic = reject
            rj = A_ASSOCIATE_RJ()
            rj.from_primitive(prim)
            _send_quietly(session.sock, rj.encode())
            return False
        result, _roles = negotiate_as_acceptor(
            rq.presentation_context_definition_list, ae.supported_contexts, None
        )
        accepted = [cx for cx in result if cx.result == 0x00]
        rejected = [cx for cx in result if cx.result != 0x00]
        session.contexts = {int(cx.context_id): cx for cx in accepted}  # type: ignore[arg-type]
        session.peer_max_pdu = int(rq.maximum_length_received or 0)
        ac = A_ASSOCIATE()
        ac.application_context_name = UID(APPLICATION_CONTEXT_NAME)
        ac.calling_ae_title = rq.calling_ae_title
        ac.called_ae_title = rq.called_ae_title
        ac.result = 0x00
        ac.result_source = 0x01
        ac.presentation_context_definition_results_list = accepted + rejected
        max_length = MaximumLengthNotification()
        max_length.maximum_length_received = ae.maximum_pdu_size
        impl_uid = ImplementationClassUIDNotification()
        impl_uid.implementation_class_uid = ae.implementation_class_uid
        items: list[Any] = [max_length, impl_uid]
        if ae.implementation_version_name:
            version = ImplementationVersionNameNotification()
            version.implementation_version_name = ae.implementation_version_name
            items.append(version)
        ac.user_information = items
        pdu = A_ASSOCIATE_AC()
        pdu.from_primitive(ac)
        session.sock.sendall(pdu.encode())
        session.established = True
        log.debug("association from %s accepted (%d contexts)", calling, len(accepted))
        return True

    # -- the association ------------------------------------------------------------------------

    def _run(self, s: _Session) -> None:
        s.sock.settimeout(self._ae.network_timeout)
        while True:
            head = s.read(6)
            kind, length = head[0], int.from_bytes(head[2:6], "big")
            if kind == _P_DATA:
                self._p_data(s, length)
            elif kind == _RELEASE_RQ:
                if length != 4:
                    raise ProtocolError(f"A-RELEASE-RQ of length {length}")
                s.read(length)
                s.sock.sendall(_RELEASE_RP)
                return
            elif kind == _ABORT:
                s.read(min(length, 64))
                log.info("association from %s aborted by the peer", s.caller.ae_title)
                return
            else:
                raise ProtocolError(f"unexpected PDU type {kind:#04x}")

    def _p_data(self, s: _Session, length: int) -> None:
        remaining = length
        while remaining > 0:
            if remaining < 6:
                raise ProtocolError("truncated presentation data value item")
            head = s.read(6)
            item = int.from_bytes(head[0:4], "big")
            context_id, control = head[4], head[5]
            remaining -= 4 + item
            if item < 2 or remaining < 0:
                raise ProtocolError("presentation data value item longer than its PDU")
            size = item - 2
            if control & 0x01:  # a command fragment
                if s.pending is not None:
                    raise ProtocolError("command received while a data set was expected")
                if len(s.command) + size > _MAX_COMMAND:
                    raise ProtocolError("command set too large")
                s.command += s.read(size)
                if control & 0x02:
                    self._command(s, context_id)
            else:  # a data set fragment
                if s.pending is None or s.pending.context_id != context_id:
                    raise ProtocolError("data set fragment without its C-STORE request")
                s.receive_data(size)
                if control & 0x02:
                    self._stored(s)

    def _command(self, s: _Session, context_id: int) -> None:
        fields = _parse_command(bytes(s.command))
        s.command.clear()
        context = s.contexts.get(context_id)
        if context is None:
            raise ProtocolError(f"presentation context {context_id} was not accepted")
        command = _us(fields, 0x0100)
        message_id = _us(fields, 0x0110)
        has_data = _us(fields, 0x0800) != _NO_DATA_SET
        if command == _C_ECHO_RQ and not has_data:
            s.send_command(
                context_id,
                _encode_command(
                    [
                        (0x0002, _ui(str(Verification))),
                        (0x0100, _C_ECHO_RSP.to_bytes(2, "little")),
                        (0x0120, message_id.to_bytes(2, "little")),
                        (0x0800, _NO_DATA_SET.to_bytes(2, "little")),
                        (0x0900, b"\x00\x00"),
                    ]
                ),
            )
            return
        if command != _C_STORE_RQ or not has_data:
            raise ProtocolError(f"command {command:#06x} is not served on a storage association")
        sop_class = _text(fields.get(0x0002, b""))
        sop_instance = _text(fields.get(0x1000, b""))
        transfer_syntax = str(context.transfer_syntax[0])
        s.begin_object(_file_meta(sop_class, sop_instance, transfer_syntax), self._spool_path)
        s.pending = _Pending(context_id, message_id, sop_class, sop_instance, transfer_syntax)

    def _stored(self, s: _Session) -> None:
        pending = s.pending
        assert pending is not None
        s.pending = None
        path, data, error = s.end_object()
        received = ReceivedObject(
            path, pending.transfer_syntax, pending.sop_class, pending.sop_instance, data, error
        )
        answer: int | Dataset = _UNABLE_TO_PROCESS
        try:
            answer = self._store(s.caller, received)
        finally:
            status, comment = _status(answer)
            if path is not None and status != 0x0000:
                path.unlink(missing_ok=True)  # not stored: the handler left the file
        elements = [
            (0x0002, _ui(pending.sop_class)),
            (0x0100, _C_STORE_RSP.to_bytes(2, "little")),
            (0x0120, pending.message_id.to_bytes(2, "little")),
            (0x0800, _NO_DATA_SET.to_bytes(2, "little")),
            (0x0900, status.to_bytes(2, "little")),
        ]
        if comment:
            elements.append((0x0902, _pad(comment.encode("ascii", "replace")[:64], b" ")))
        elements.append((0x1000, _ui(pending.sop_instance)))
        s.send_command(pending.context_id, _encode_command(elements))

    def _spool_path(self) -> Path:
        # Where pynetdicom spools too: the app points tempfile at the data directory, so a
        # stored file is renamed into the object store, never copied.
        directory = Path(tempfile.gettempdir())
        return directory / f"rx-{uuid.uuid4().hex}.dcm"


@dataclass(slots=True)
class _Pending:
    """A C-STORE request whose data set is being received."""

    context_id: int
    message_id: int
    sop_class: str
    sop_instance: str
    transfer_syntax: str


class _Session:
    """One association's socket, its read buffer and receive state."""

    def __init__(self, sock: socket.socket, caller: Caller) -> None:
        self.sock = sock
        self.caller = caller
        self.established = False
        self.contexts: dict[int, PresentationContext] = {}
        self.peer_max_pdu = 0
        self.command = bytearray()
        self.pending: _Pending | None = None
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
                raise _Closed
            self._end += got

    def receive_data(self, n: int) -> None:
        """Take the next n bytes of the object's data set from the peer."""
        while n > 0:
            if self._start == self._end:
                self._start = self._end = 0
                got = self.sock.recv_into(self._view)
                if got == 0:
                    raise _Closed
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


class DivertingServer(ThreadedAssociationServer):
    """pynetdicom's association server, which first offers each connection to a FastStore."""

    fast_store: FastStore | None = None
    # A fast-path association runs in its connection's thread: shutdown() must not wait for
    # those (DicomServer.stop aborts them right after).
    daemon_threads = True
    block_on_close = False

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Serve storage-only associations on the fast path, the rest with pynetdicom."""
        fast = self.fast_store
        try:
            taken = fast is not None and fast.serve(request, client_address)
        except Exception:  # serve reads nothing before it takes a connection: pynetdicom's
            log.exception("fast storage path failed before taking a connection")
            taken = False
        if taken:
            self.shutdown_request(request)
            return
        super().finish_request(request, client_address)


# -- encoding and decoding ---------------------------------------------------------------------


def _read_exact(sock: socket.socket, n: int) -> bytes:
    if n == 0:
        return b""
    data = sock.recv(n)
    if len(data) == n:
        return data
    if not data:
        raise _Closed
    parts = [data]
    missing = n - len(data)
    while missing:
        more = sock.recv(missing)
        if not more:
            raise _Closed
        parts.append(more)
        missing -= len(more)
    return b"".join(parts)


def _peek_exact(sock: socket.socket, n: int) -> bytes | None:
    """The next n bytes, left unread; None when the peer closes or stops short.

    The first read waits (up to the socket's timeout) for data; a request split over several
    TCP segments is then waited for in 1 ms steps until the socket's timeout has passed.
    """
    deadline = time.monotonic() + (sock.gettimeout() or 30)
    while True:
        data = sock.recv(n, socket.MSG_PEEK)
        if len(data) >= n:
            return data[:n]
        if not data or time.monotonic() > deadline:
            return None
        time.sleep(0.001)


def _parse_command(data: bytes) -> dict[int, bytes]:
    """The elements of a command set (Implicit VR Little Endian, group 0000) by element."""
    fields: dict[int, bytes] = {}
    pos, end = 0, len(data)
    while pos + 8 <= end:
        group = int.from_bytes(data[pos : pos + 2], "little")
        element = int.from_bytes(data[pos + 2 : pos + 4], "little")
        length = int.from_bytes(data[pos + 4 : pos + 8], "little")
        pos += 8
        if group != 0x0000 or pos + length > end:
            raise ProtocolError("malformed command set")
        fields[element] = data[pos : pos + length]
        pos += length
    if pos != end:
        raise ProtocolError("malformed command set")
    return fields


def _encode_command(elements: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(
        b"\x00\x00" + element.to_bytes(2, "little") + len(value).to_bytes(4, "little") + value
        for element, value in elements
    )
    return b"\x00\x00\x00\x00\x04\x00\x00\x00" + len(body).to_bytes(4, "little") + body


def _us(fields: dict[int, bytes], element: int) -> int:
    value = fields.get(element, b"")
    if len(value) < 2:
        raise ProtocolError(f"command element (0000,{element:04X}) missing")
    return int.from_bytes(value[:2], "little")


def _text(value: bytes) -> str:
    return value.rstrip(b"\x00 ").decode("ascii", "replace")


def _pad(value: bytes, pad: bytes) -> bytes:
    return value + pad if len(value) % 2 else value


def _ui(uid: str) -> bytes:
    return _pad(uid.encode("ascii"), b"\x00")


def _status(answer: int | Dataset) -> tuple[int, str]:
    if isinstance(answer, int):
        return answer, ""
    return int(answer.Status), str(answer.get("ErrorComment", "") or "")


def _file_meta(sop_class: str, sop_instance: str, transfer_syntax: str) -> bytes:
    """Preamble, DICM and the File Meta Information pynetdicom writes for a received object.

    The same bytes as pydicom's `write_file_meta_info(create_file_meta(...))` (a test
    compares them), encoded directly: pydicom takes ~0.2 ms for it, a small object's store
    about 1 ms.
    """
    body = b"".join(
        (
            b"\x02\x00\x01\x00OB\x00\x00\x02\x00\x00\x00\x00\x01",
            _meta_element(0x0002, b"UI", _ui(sop_class)),
            _meta_element(0x0003, b"UI", _ui(sop_instance)),
            _meta_element(0x0010, b"UI", _ui(transfer_syntax)),
            _meta_element(0x0012, b"UI", _ui(PYNETDICOM_IMPLEMENTATION_UID)),
            _meta_element(
                0x0013, b"SH", _pad(PYNETDICOM_IMPLEMENTATION_VERSION.encode("ascii"), b" ")
            ),
        )
    )
    group_length = b"\x02\x00\x00\x00UL\x04\x00" + len(body).to_bytes(4, "little")
    return bytes(128) + b"DICM" + group_length + body


def _meta_element(element: int, vr: bytes, value: bytes) -> bytes:
    return (
        b"\x02\x00" + element.to_bytes(2, "little") + vr + len(value).to_bytes(2, "little") + value
    )


def _drain(sock: socket.socket, limit: int = 1 << 22, wait: float = 1.0) -> None:
    """End our side, then read what the peer still sends (bounded) until it closes.

    Closing a socket with unread bytes makes the kernel answer with a reset, which can
    destroy our own last PDU (an A-ABORT or A-RELEASE-RP) before the peer reads it.
    """
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(wait)
        while limit > 0:
            data = sock.recv(min(limit, 65536))
            if not data:
                return
            limit -= len(data)


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(data)


__all__ = [
    "STORAGE_SOP_CLASSES",
    "Caller",
    "ClosedHandler",
    "DivertingServer",
    "FastStore",
    "ProtocolError",
    "ReceivedObject",
    "StoreHandler",
]
