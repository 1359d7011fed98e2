"""Event-driven waits for pynetdicom's two polling reactor threads (checked against 3.0.4).

pynetdicom runs two threads per association and both poll:

* the DUL thread (``pynetdicom.dul.DULServiceProvider.run_reactor``) sleeps
  ``_run_loop_delay`` (1 ms) whenever a loop found nothing to do, so an arriving PDU waits up to
  1 ms before it is read, and a reply queued by the Association thread waits up to 1 ms before
  it is sent;
* the Association thread (``pynetdicom.association.Association._run_reactor``) sleeps 1 ms on
  *every* loop before it looks for a decoded DIMSE message.

With one C-STORE in flight at a time (storescu and every modality send the next object only
after the reply) these sleeps add 2-3 ms to every object; for small objects that is most of the
time (the peer harness, shared/peer-benchmarks ``--loop-delay``, measured 350 -> 589 inst/s
for an SCP that stores raw bytes).  Shortening the sleeps would work but busy-polls two
threads per association on the GIL.  This module instead makes each sleep *interruptible*:

* the DUL thread waits in ``select()`` on its socket and on a wake-up socket pair, for at most
  the same delay as before; ``DULServiceProvider.send_pdu`` (the only producer of its
  ``to_provider_queue``) writes a byte to the pair, so replies leave at once;
* the Association thread's 1 ms sleep becomes a wait on the DIMSE message queue's
  ``not_empty`` condition, also for at most 1 ms, so a decoded request is served at once.

Every wait keeps its old upper bound, so everything pynetdicom checks on a timer (ARTIM,
release and abort requests, kill flags) behaves as before; only the latency to the two events
above changes.  Each patch replaces the module-level ``time`` name that the two reactors call,
with a shim that handles ``sleep`` from those threads and forwards everything else to
:mod:`time`.  ``apply()`` is idempotent and is called when a DicomServer is built; re-check
this module against pynetdicom's ``dul.py`` and ``association.py`` when upgrading it.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pynetdicom
import pynetdicom.association
import pynetdicom.dul
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.transport import AssociationSocket

#: The pynetdicom release whose reactor loops this module was written against.
CHECKED_AGAINST = "3.0.4"

#: The hard-coded per-loop sleep of ``Association._run_reactor`` (association.py).
_ASSOC_LOOP_SLEEP = 0.001

log = logging.getLogger(__name__)
_lock = threading.Lock()
_applied = False


class _Waker:
    """A socket pair that wakes a DUL thread waiting in select()."""

    def __init__(self) -> None:
        self.reader, self._writer = socket.socketpair()
        self.reader.setblocking(False)
        self._writer.setblocking(False)

    def wake(self) -> None:
        """Make the next (or current) wait return at once."""
        # OSError: the buffer is full (a wake-up is already pending) or the pair is closed.
        with contextlib.suppress(OSError):
            self._writer.send(b"\0")

    def drain(self) -> None:
        """Consume pending wake-ups."""
        try:
            while self.reader.recv(4096):
                pass
        except OSError:  # nothing left (BlockingIOError) or closed
            pass

    def close(self) -> None:
        """Release both ends."""
        self.reader.close()
        self._writer.close()


def _dul_wait(dul: DULServiceProvider, seconds: float) -> None:
    """Sleep up to seconds, returning early when the socket has data or a PDU is queued."""
    waker: _Waker | None = getattr(dul, "_pacsflow_waker", None)
    assoc_sock = dul.socket
    sock = assoc_sock.socket if assoc_sock is not None else None
    if waker is None or sock is None or sock.fileno() < 0:
        time.sleep(seconds)
        return
    try:
        select.select([sock, waker.reader], [], [], seconds)
    except (OSError, ValueError):  # socket closed under us: fall back to the old sleep
        time.sleep(seconds)
        return
    waker.drain()


def _assoc_wait(assoc: Association, seconds: float) -> None:
    """Sleep up to seconds, returning early when a decoded DIMSE message is waiting."""
    q = assoc.dimse.msg_queue
    with q.not_empty:  # holds q.mutex (not reentrant): look at q.queue, not q.qsize()
        if not q.queue:
            q.not_empty.wait(seconds)
        if q.queue:
            # Queue.put notifies one waiter. While the reactor is paused, the user's thread
            # (an SCU's send_c_find, an SCP's C-GET sub-operations) waits in get_msg() on
            # the same condition: if this wait took the notification, that get() would
            # sleep until its DIMSE timeout with a message in the queue. Pass it on.
            q.not_empty.notify()


class _DulTime:
    """``time`` as pynetdicom.dul sees it: sleeps of a DUL reactor thread are interruptible."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        """Wait like time.sleep, but wake on DUL events when called by a DUL thread."""
        thread = threading.current_thread()
        if isinstance(thread, DULServiceProvider):
            _dul_wait(thread, seconds)
        else:
            time.sleep(seconds)


class _AssociationTime:
    """``time`` as pynetdicom.association sees it: the reactor's 1 ms sleep is interruptible."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        """Wait like time.sleep, but wake on a DIMSE message in the reactor's loop sleep."""
        thread = threading.current_thread()
        if seconds == _ASSOC_LOOP_SLEEP and isinstance(thread, Association):
            _assoc_wait(thread, seconds)
        else:
            time.sleep(seconds)


def _wrap_run_reactor(original: Callable[[DULServiceProvider], None]) -> Any:
    def run_reactor(self: DULServiceProvider) -> None:
        waker = _Waker()
        self._pacsflow_waker = waker  # type: ignore[attr-defined]
        try:
            original(self)
        finally:
            self._pacsflow_waker = None  # type: ignore[attr-defined]
            waker.close()

    return run_reactor


def _wrap_send_pdu(original: Callable[[DULServiceProvider, Any], None]) -> Any:
    def send_pdu(self: DULServiceProvider, primitive: Any) -> None:
        original(self, primitive)
        waker: _Waker | None = getattr(self, "_pacsflow_waker", None)
        if waker is not None:
            waker.wake()

    return send_pdu


#: The largest single read pynetdicom may make for one PDU. pynetdicom 3.0.4 reads a PDU of
#: whatever length its header declares into memory, before any association exists
#: (pynetdicom#1086): a peer declaring 4 GiB could make us buffer 4 GiB. Peers must respect the
#: maximum PDU length we announce (256 KiB by default); 2 MiB leaves ample room for large
#: A-ASSOCIATE-RQs while bounding a hostile connection.
MAX_PDU_READ = 2 * 1024 * 1024


def _wrap_recv(recv: Callable[..., bytearray]) -> Callable[..., bytearray]:
    def guarded_recv(self: Any, nr_bytes: int) -> bytearray:
        if nr_bytes > MAX_PDU_READ:
            # pynetdicom treats OSError from recv as "transport closed" (Evt17) and drops it.
            raise OSError(f"a PDU of {nr_bytes} bytes exceeds the {MAX_PDU_READ}-byte limit")
        return recv(self, nr_bytes)

    return guarded_recv


def apply() -> None:
    """Install the interruptible waits into pynetdicom (once per process)."""
    global _applied
    with _lock:
        if _applied:
            return
        if pynetdicom.__version__ != CHECKED_AGAINST:
            log.warning(
                "pynetdicom %s: reactor tuning was checked against %s only",
                pynetdicom.__version__,
                CHECKED_AGAINST,
            )
        pynetdicom.dul.time = _DulTime()  # type: ignore[assignment,attr-defined]
        pynetdicom.association.time = _AssociationTime()  # type: ignore[assignment,attr-defined]
        dul_cls: Any = DULServiceProvider
        dul_cls.run_reactor = _wrap_run_reactor(dul_cls.run_reactor)
        dul_cls.send_pdu = _wrap_send_pdu(dul_cls.send_pdu)
        socket_cls: Any = AssociationSocket
        socket_cls.recv = _wrap_recv(socket_cls.recv)
        _applied = True


__all__ = ["CHECKED_AGAINST", "MAX_PDU_READ", "apply"]
