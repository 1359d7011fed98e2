"""New DICOM connections until their A-ASSOCIATE-RQ is complete: the ARTIM timer (PS3.8 9.1.5).

A TCP connection is not an association. Until its A-ASSOCIATE-RQ has arrived whole, a new
connection waits here, in one thread for all of them, and costs neither a thread nor an
association slot: PS3.8's state Sta2 ("transport connection open, awaiting A-ASSOCIATE-RQ")
with its ARTIM timer. A connection whose request is not complete when the timer expires is
closed (AA-2); one whose first bytes are not an A-ASSOCIATE-RQ of an acceptable length is
answered with an A-ABORT and closed (AA-1). The bytes are only *peeked* (MSG_PEEK): the
complete request is still in the socket when the connection is handed on to the fast storage
path or to pynetdicom, which then read it at once instead of waiting.

Waiting does not poll: the socket's receive low-water mark (SO_RCVLOWAT) is set to the
number of bytes still missing, so the kernel reports it readable only once they are all there
(or the peer closed). At most `MAX_WAITING` connections wait at a time; past that the oldest
waiting connection of the address with the most waiting connections is closed, so a flood
from one address cannot push out another's requests, and a request that completes within
milliseconds (every real peer's) is never pushed out by connections that say nothing.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import struct
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: Connections that may wait for their A-ASSOCIATE-RQ at the same time.
MAX_WAITING = 256
#: PDU type of an A-ASSOCIATE-RQ and the length of every PDU header (PS3.8 9.3.1).
_ASSOCIATE_RQ, _HEADER = 0x01, 6
#: The fixed fields of an A-ASSOCIATE-RQ (PS3.8 9.3.2): a shorter one cannot be valid.
_MIN_RQ_LENGTH = 68
#: A-ABORT from the service provider, reason: unrecognized PDU (PS3.8 9.3.8).
_ABORT_PDU = b"\x07\x00\x00\x00\x00\x04\x00\x00\x02\x01"
#: TCP_INFO's first byte is the connection state; CLOSE_WAIT means the peer has closed.
_TCP_ESTABLISHED = 1

#: Called with a connection whose A-ASSOCIATE-RQ is complete (blocking mode, unread).
Handoff = Callable[[socket.socket, Any], None]


@dataclass(slots=True)
class _Waiting:
    """A connection waiting for the rest of its A-ASSOCIATE-RQ."""

    sock: socket.socket
    address: Any
    host: str
    deadline: float
    #: Bytes needed at the head of the socket: the PDU header, then the whole request.
    need: int = _HEADER


class Admission:
    """Holds new connections until their A-ASSOCIATE-RQ is complete, at most `artim` seconds."""

    def __init__(self, handoff: Handoff, *, artim: float, max_request: int) -> None:
        self._handoff = handoff
        self._artim = artim
        self._max_request = max_request
        self._selector = selectors.DefaultSelector()
        self._waker_r, self._waker_w = socket.socketpair()
        self._waker_r.setblocking(False)
        self._waker_w.setblocking(False)
        self._selector.register(self._waker_r, selectors.EVENT_READ)
        self._arrived: deque[tuple[socket.socket, Any]] = deque()
        # Oldest first: deadlines only grow, so the first entries expire first.
        self._waiting: OrderedDict[int, _Waiting] = OrderedDict()
        self._per_host: Counter[str] = Counter()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="pacsflow-dicom-artim", daemon=True)

    @property
    def waiting(self) -> int:
        """Connections waiting for their A-ASSOCIATE-RQ now."""
        return len(self._waiting)

    def start(self) -> None:
        """Start the thread that watches waiting connections."""
        self._thread.start()

    def add(self, sock: socket.socket, address: Any) -> None:
        """Take a new connection (from the accept loop; returns at once)."""
        self._arrived.append((sock, address))
        self._wake()

    def stop(self) -> None:
        """Close every waiting connection and end the thread."""
        self._stopping = True
        self._wake()
        self._thread.join(timeout=5)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full: a wake-up is pending already
            self._waker_w.send(b"\0")

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping:
                timeout = None
                if self._waiting:
                    first = next(iter(self._waiting.values()))
                    timeout = max(0.0, first.deadline - time.monotonic())
                for key, _ in self._selector.select(timeout):
                    if key.fileobj is self._waker_r:
                        self._take_arrivals()
                    else:
                        self._readable(key.data)
                self._expire(time.monotonic())
        except Exception:  # the listener must not lose its gate silently
            log.exception("DICOM admission thread failed")
        finally:
            for w in list(self._waiting.values()):
                self._drop(w)
            while self._arrived:
                _close(self._arrived.popleft()[0])
            self._selector.close()
            self._waker_r.close()
            self._waker_w.close()

    def _take_arrivals(self) -> None:
        with contextlib.suppress(OSError):
            while self._waker_r.recv(4096):
                pass
        while self._arrived:
            sock, address = self._arrived.popleft()
            if len(self._waiting) >= MAX_WAITING:
                self._serve_ready()  # a request that is complete leaves rather than being evicted
            if len(self._waiting) >= MAX_WAITING:
                self._evict()
            host = str(address[0]) if isinstance(address, tuple) else str(address)
            w = _Waiting(sock, address, host, time.monotonic() + self._artim)
            try:
                sock.setblocking(False)
                _set_low_water(sock, w.need)
                self._selector.register(sock, selectors.EVENT_READ, w)
            except (OSError, ValueError):  # closed by the peer before we got to it
                _close(sock)
                continue
            self._waiting[id(sock)] = w
            self._per_host[host] += 1

    def _serve_ready(self) -> None:
        """Look at every waiting connection that has news, without waiting."""
        for key, _ in self._selector.select(0):
            if key.fileobj is not self._waker_r:
                self._readable(key.data)

    def _evict(self) -> None:
        """Close the oldest waiting connection of the address that has the most waiting."""
        host, _ = self._per_host.most_common(1)[0]
        for w in self._waiting.values():
            if w.host == host:
                log.info("closing a waiting DICOM connection from %s: too many waiting", host)
                self._drop(w)
                return

    def _expire(self, now: float) -> None:
        while self._waiting:
            w = next(iter(self._waiting.values()))
            if w.deadline > now:
                return
            log.info("DICOM connection from %s: no A-ASSOCIATE-RQ within ARTIM, closed", w.host)
            self._drop(w)

    def _readable(self, w: _Waiting) -> None:
        try:
            head = w.sock.recv(w.need, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError:
            self._drop(w)
            return
        if not head:
            self._drop(w)  # closed before saying anything
            return
        if head[0] != _ASSOCIATE_RQ:
            self._drop(w, abort=True)
            return
        if len(head) >= _HEADER and w.need == _HEADER:
            (length,) = struct.unpack(">L", head[2:6])
            if not _MIN_RQ_LENGTH <= length <= self._max_request:
                self._drop(w, abort=True)
                return
            w.need = _HEADER + length
            head = self._peek_again(w)
        if len(head) >= w.need:
            self._complete(w)
        elif not _is_open(w.sock):
            self._drop(w)  # the peer closed mid-request
        else:
            _set_low_water(w.sock, w.need)

    def _peek_again(self, w: _Waiting) -> bytes:
        try:
            return w.sock.recv(w.need, socket.MSG_PEEK)
        except OSError:
            return b""

    def _complete(self, w: _Waiting) -> None:
        self._forget(w)
        try:
            _set_low_water(w.sock, 1)
            w.sock.setblocking(True)
        except OSError:
            _close(w.sock)
            return
        try:
            self._handoff(w.sock, w.address)
        except Exception:  # a failed hand-off loses this connection, never the gate
            log.exception("handing a DICOM connection on failed")
            _close(w.sock)

    def _forget(self, w: _Waiting) -> None:
        if self._waiting.pop(id(w.sock), None) is None:
            return
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(w.sock)
        self._per_host[w.host] -= 1
        if self._per_host[w.host] <= 0:
            del self._per_host[w.host]

    def _drop(self, w: _Waiting, *, abort: bool = False) -> None:
        self._forget(w)
        if abort:
            with contextlib.suppress(OSError):
                w.sock.send(_ABORT_PDU)
        _discard_received(w.sock)  # closing with unread bytes would reset the A-ABORT away
        _close(w.sock)


def _set_low_water(sock: socket.socket, n: int) -> None:
    """Report the socket readable only once n bytes are queued (or the peer closed)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, n)


def _is_open(sock: socket.socket) -> bool:
    """False once the peer has closed its side (or the connection is gone)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)
    except OSError:
        return False
    return info[0] == _TCP_ESTABLISHED


def _discard_received(sock: socket.socket, limit: int = 1 << 20) -> None:
    """Read what has arrived so far (non-blocking, at most limit bytes) and forget it."""
    with contextlib.suppress(OSError):
        _set_low_water(sock, 1)
        while limit > 0:
            data = sock.recv(min(limit, 65536), socket.MSG_DONTWAIT)
            if not data:
                return
            limit -= len(data)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


__all__ = ["MAX_WAITING", "Admission", "Handoff"]
