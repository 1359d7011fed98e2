"""The DICOM listener's connection handling: bounded waits and per-address association limits.

pynetdicom gives every accepted connection a thread and an association, which counts against
the AE's association limit from the first byte on, and its DUL thread then waits for the rest
of a PDU header without a time limit. `GuardedServer` changes what happens before pynetdicom
(or the fast storage path) sees a connection:

* a plain TCP connection first waits in `admission.Admission` (one thread for all, ARTIM
  bounded) until its A-ASSOCIATE-RQ is complete; only then does it get a thread;
* a TLS connection gets its thread at once, but its handshake must finish within ARTIM and,
  until the association is accepted, every read waits at most ARTIM (`bound_reads`);
* before an association is served, the associations of its source address are counted: past
  `per_address` it is rejected like pynetdicom rejects past the global limit (A-ASSOCIATE-RJ,
  rejected-transient, local-limit-exceeded; PS3.8 9.3.4).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import select
import socket
import ssl
import threading
import time
from collections import Counter
from typing import Any

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.events import Event

from pacsflow.adapters.dicom import _tuning
from pacsflow.adapters.dicom.admission import Admission
from pacsflow.adapters.dicom.fastpath.receiver import DivertingServer
from pacsflow.adapters.dicom.fastpath.wire import drain

log = logging.getLogger(__name__)

#: A-ASSOCIATE-RJ: rejected-transient, DICOM UL service-provider (presentation related
#: function), local-limit-exceeded (PS3.8 9.3.4).
_REJECT_LOCAL_LIMIT = b"\x03\x00\x00\x00\x00\x04\x00\x02\x03\x02"


class ListeningAE(AE):
    """pynetdicom's AE, whose association count leaves out associations that are over.

    pynetdicom counts an association (against `maximum_associations`, and here per address)
    as long as its thread lives. After a bad A-ASSOCIATE-RQ, or once the peer has gone, that
    thread still waits out the ACSE timeout: the slot would stay taken for seconds after the
    connection closed. An association whose connection is closed, or that was released,
    aborted or rejected, no longer counts.
    """

    @property
    def active_associations(self) -> list[Association]:
        """The associations that still hold a connection."""
        return [a for a in super().active_associations if _holds_connection(a)]


def _holds_connection(assoc: Association) -> bool:
    if assoc.is_released or assoc.is_aborted or assoc.is_rejected:
        return False
    transport = assoc.dul.socket
    sock = transport.socket if transport is not None else None
    # A bad request or the peer's close ends the DUL thread and closes the socket (fd -1).
    return assoc.dul.is_alive() and sock is not None and sock.fileno() >= 0


class GuardedServer(DivertingServer):
    """The DICOM association server with ARTIM-bounded admission and a per-address limit."""

    #: Connections the kernel queues before they are accepted (socketserver's default is 5:
    #: a burst of probes would make real peers wait for a SYN retransmission, 1 s or more).
    request_queue_size = socket.SOMAXCONN
    #: Seconds between the full garbage collections the accept loop runs (see service_actions).
    gc_interval = 10.0
    _last_gc = 0.0
    #: How long a connection may take to complete its TLS handshake and A-ASSOCIATE-RQ.
    artim: float = 5.0
    #: Associations one source address may hold at a time (0: no limit of its own).
    per_address: int = 0
    admission: Admission | None = None

    def start_admission(self, *, artim: float, per_address: int) -> None:
        """Set the limits and start the admission thread (before serve_forever)."""
        self.artim = artim
        self.per_address = per_address
        self._serving: Counter[str] = Counter()
        self._serving_lock = threading.Lock()
        self.admission = Admission(self._admitted, artim=artim, max_request=_tuning.MAX_PDU_READ)
        self.admission.start()

    def stop_admission(self) -> None:
        """Close the connections still waiting for their request."""
        if self.admission is not None:
            self.admission.stop()

    def service_actions(self) -> None:
        """Collect garbage every gc_interval seconds, not every 60 connections.

        pynetdicom runs a full gc.collect() in the accept loop every 60 loop turns (for dead
        Association threads); under a flood of short connections that is several full
        collections a second, each stopping the accept loop while the backlog overflows.
        """
        now = time.monotonic()
        if now - self._last_gc >= self.gc_interval:
            self._last_gc = now
            gc.collect()

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept a connection; a TLS handshake is left to the connection's own thread."""
        assert self.socket is not None
        sock, address = self.socket.accept()
        if self.ssl_context is not None:
            # pynetdicom shakes hands here, in the accept loop, with no time limit: one
            # silent connection would stop the listener from accepting anything else.
            sock = self.ssl_context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
        return sock, address

    def process_request(self, request: Any, client_address: Any) -> None:
        """Plain connections wait for their A-ASSOCIATE-RQ first; TLS ones get a thread."""
        if self.admission is None or isinstance(request, ssl.SSLSocket):
            super().process_request(request, client_address)
        else:
            self.admission.add(request, client_address)

    def _admitted(self, request: socket.socket, client_address: Any) -> None:
        super().process_request(request, client_address)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection unless its address already holds its share of associations."""
        if isinstance(request, ssl.SSLSocket) and not _handshake(request, self.artim):
            self.shutdown_request(request)
            return
        host = str(client_address[0]) if isinstance(client_address, tuple) else ""
        if not self._take(host):
            log.info("rejecting association from %s: per-address limit", host)
            _reject(request, self.artim)
            self.shutdown_request(request)
            return
        try:
            super().finish_request(request, client_address)
        finally:
            self._give_back(host)

    def _take(self, host: str) -> bool:
        if not self.per_address or not hasattr(self, "_serving"):
            return True
        with self._serving_lock:
            # Associations served by pynetdicom live on in their own threads once this
            # connection thread has returned; fast-path ones end with it (counted in _serving).
            held = self._serving[host] + sum(
                1
                for a in self.ae.active_associations
                if a.is_acceptor and a.requestor.address == host and _holds_connection(a)
            )
            if held >= self.per_address:
                return False
            self._serving[host] += 1
            return True

    def _give_back(self, host: str) -> None:
        if not self.per_address or not hasattr(self, "_serving"):
            return
        with self._serving_lock:
            self._serving[host] -= 1
            if self._serving[host] <= 0:
                del self._serving[host]


def bound_reads(event: Event, seconds: float) -> None:
    """Limit each read of a pynetdicom connection to seconds (EVT_CONN_OPEN, EVT_ACCEPTED).

    pynetdicom reads a PDU with blocking recv calls and no timeout: a peer that stops in the
    middle of one would hold its thread and association slot forever. A read that times out
    ends the association (PS3.8 Evt17, transport closed).
    """
    sock = event.assoc.dul.socket
    if sock is not None and sock.socket is not None:
        with contextlib.suppress(OSError):
            sock.socket.settimeout(seconds)


def _handshake(sock: ssl.SSLSocket, seconds: float) -> bool:
    """Complete the server side of a TLS handshake within seconds; False if it did not."""
    deadline = time.monotonic() + seconds
    try:
        sock.setblocking(False)
        while True:
            try:
                sock.do_handshake()
                break
            except ssl.SSLWantReadError:
                wait: tuple[list[Any], list[Any]] = ([sock], [])
            except ssl.SSLWantWriteError:
                wait = ([], [sock])
            left = deadline - time.monotonic()
            if left <= 0:
                log.info("TLS handshake not completed within ARTIM: connection closed")
                return False
            select.select(*wait, [], left)
        sock.setblocking(True)
        return True
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        log.info("TLS handshake failed: %s", exc)
        return False


def _reject(sock: socket.socket, seconds: float) -> None:
    """Answer local-limit-exceeded, then read what the peer sent until it closes (bounded).

    Reading before the close keeps the kernel from answering with a reset, which could
    destroy the A-ASSOCIATE-RJ before the peer has read it.
    """
    with contextlib.suppress(OSError):
        sock.settimeout(seconds)
        sock.sendall(_REJECT_LOCAL_LIMIT)
    drain(sock, wait=min(seconds, 1.0))


__all__ = ["GuardedServer", "ListeningAE", "bound_reads"]
