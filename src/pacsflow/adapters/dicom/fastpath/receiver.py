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
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE
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
from pynetdicom.presentation import negotiate_as_acceptor
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from pacsflow.adapters.dicom import negotiation
from pacsflow.adapters.dicom.fastpath.session import (
    Caller,
    ClosedHandler,
    Pending,
    ReceivedObject,
    Session,
    StoreHandler,
)
from pacsflow.adapters.dicom.fastpath.wire import (
    PeerClosed,
    ProtocolError,
    command_text,
    command_us,
    drain,
    encode_command,
    encode_file_meta,
    encode_ui,
    padded,
    parse_command,
    peek_exact,
    read_exact,
    send_quietly,
    status_of,
)

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
            send_quietly(sock, _ABORT_PDU)
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
        read_exact(sock, len(raw))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        host = str(address[0]) if isinstance(address, tuple) else str(address)
        session = Session(sock, Caller(primitive.calling_ae_title.strip(), host, id(sock)))
        with self._lock:
            self._live[id(sock)] = sock
            self.served += 1
        try:
            if self._negotiate(session, primitive):
                self._run(session)
        except (PeerClosed, TimeoutError, ConnectionError):
            log.debug("association from %s ended by the connection", session.caller.ae_title)
        except ProtocolError as exc:
            log.warning("association from %s aborted: %s", session.caller.ae_title, exc)
            send_quietly(sock, _ABORT_PDU)
        except Exception:  # one association's failure never takes the listener with it
            log.exception("association from %s failed", session.caller.ae_title)
            send_quietly(sock, _ABORT_PDU)
        finally:
            session.discard_partial()
            drain(sock)
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
            head = peek_exact(sock, 6)
            if head is None or head[0] != _ASSOCIATE_RQ:
                return None
            length = int.from_bytes(head[2:6], "big")
            if length > _MAX_RQ:
                return None
            raw = peek_exact(sock, 6 + length)
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

    def _negotiate(self, session: Session, rq: A_ASSOCIATE) -> bool:
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
            send_quietly(session.sock, rj.encode())
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

    def _run(self, s: Session) -> None:
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

    def _p_data(self, s: Session, length: int) -> None:
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

    def _command(self, s: Session, context_id: int) -> None:
        fields = parse_command(bytes(s.command))
        s.command.clear()
        context = s.contexts.get(context_id)
        if context is None:
            raise ProtocolError(f"presentation context {context_id} was not accepted")
        command = command_us(fields, 0x0100)
        message_id = command_us(fields, 0x0110)
        has_data = command_us(fields, 0x0800) != _NO_DATA_SET
        if command == _C_ECHO_RQ and not has_data:
            s.send_command(
                context_id,
                encode_command(
                    [
                        (0x0002, encode_ui(str(Verification))),
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
        sop_class = command_text(fields.get(0x0002, b""))
        sop_instance = command_text(fields.get(0x1000, b""))
        transfer_syntax = str(context.transfer_syntax[0])
        s.begin_object(encode_file_meta(sop_class, sop_instance, transfer_syntax), self._spool_path)
        s.pending = Pending(context_id, message_id, sop_class, sop_instance, transfer_syntax)

    def _stored(self, s: Session) -> None:
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
            status, comment = status_of(answer)
            if path is not None and status != 0x0000:
                path.unlink(missing_ok=True)  # not stored: the handler left the file
        elements = [
            (0x0002, encode_ui(pending.sop_class)),
            (0x0100, _C_STORE_RSP.to_bytes(2, "little")),
            (0x0120, pending.message_id.to_bytes(2, "little")),
            (0x0800, _NO_DATA_SET.to_bytes(2, "little")),
            (0x0900, status.to_bytes(2, "little")),
        ]
        if comment:
            elements.append((0x0902, padded(comment.encode("ascii", "replace")[:64], b" ")))
        elements.append((0x1000, encode_ui(pending.sop_instance)))
        s.send_command(pending.context_id, encode_command(elements))

    def _spool_path(self) -> Path:
        # Where pynetdicom spools too: the app points tempfile at the data directory, so a
        # stored file is renamed into the object store, never copied.
        directory = Path(tempfile.gettempdir())
        return directory / f"rx-{uuid.uuid4().hex}.dcm"


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


__all__ = ["STORAGE_SOP_CLASSES", "DivertingServer", "FastStore"]
