"""Best-effort delivery of audit messages to an ATNA collector: syslog over TLS (RFC 5425).

The database is the source of truth for the audit trail; this is a copy for the site's
collector. `send` never blocks and never raises: events wait in a bounded in-memory queue
(when it is full the newest event is dropped and counted), a background thread connects,
sends each frame and reconnects with backoff. Events still queued when the process stops,
and a frame in flight when a connection breaks, may be lost or sent twice; the collector
can always be refilled from the database.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
from collections import deque
from pathlib import Path

from pacsflow.adapters.syslog.messages import octet_counted, syslog_frame
from pacsflow.domain.audit import AuditEvent

log = logging.getLogger(__name__)


def client_tls_context(
    cafile: Path | str | None = None,
    certfile: Path | str | None = None,
    keyfile: Path | str | None = None,
) -> ssl.SSLContext:
    """A TLS client context for the collector: TLS 1.2 or newer, server verified.

    With a certificate this node authenticates itself too (ATNA ITI-19, mutual TLS).
    """
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if certfile:
        context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    return context


class SyslogTlsSender:
    """Forwards audit events to one syslog collector over TLS, in order, best-effort."""

    def __init__(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext,
        *,
        hostname: str | None = None,
        queue_size: int = 10_000,
        timeout: float = 10.0,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self._context = ssl_context
        self._hostname = hostname or socket.getfqdn() or "-"
        self._procid = str(os.getpid())
        self._queue_size = queue_size
        self._timeout = timeout
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._queue: deque[AuditEvent] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._closing = False
        self._sock: ssl.SSLSocket | None = None
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.dropped = 0
        self.failures = 0

    @property
    def pending(self) -> int:
        """Events not yet handed to the collector."""
        with self._cond:
            return len(self._queue) + (1 if self._busy else 0)

    def start(self) -> None:
        """Start the delivery thread."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"syslog-{self.host}:{self.port}", daemon=True
            )
            self._thread.start()

    def send(self, event: AuditEvent) -> None:
        """Queue an event for delivery; drops it (counted) when the queue is full."""
        with self._cond:
            if self._closing or len(self._queue) >= self._queue_size:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning(
                        "audit forwarding queue full or closed; %d events dropped so far "
                        "(the database keeps them)",
                        self.dropped,
                    )
                return
            self._queue.append(event)
            self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until every queued event was sent; False when time ran out first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout=timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Try to send what is queued for up to timeout seconds, then stop."""
        if self._thread is not None:
            self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._disconnect()

    def _next(self) -> AuditEvent | None:
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._closing)
            if self._closing:
                return None
            self._busy = True
            return self._queue.popleft()

    def _done(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def _run(self) -> None:
        backoff = self._min_backoff
        while (event := self._next()) is not None:
            frame = octet_counted(syslog_frame(event, hostname=self._hostname, procid=self._procid))
            while True:
                try:
                    self._connection().sendall(frame)
                except (OSError, ssl.SSLError) as exc:
                    self.failures += 1
                    self._disconnect()
                    if self.failures == 1 or backoff >= self._max_backoff:
                        log.warning(
                            "audit collector %s:%d unreachable (%s); retrying in %.1f s",
                            self.host,
                            self.port,
                            exc.__class__.__name__,
                            backoff,
                        )
                    with self._cond:
                        if self._cond.wait_for(lambda: self._closing, timeout=backoff):
                            # Closing: put the event back so `pending` stays truthful.
                            self._queue.appendleft(event)
                            self._busy = False
                            self._cond.notify_all()
                            return
                    backoff = min(backoff * 2, self._max_backoff)
                    continue
                self.sent += 1
                backoff = self._min_backoff
                break
            self._done()

    def _connection(self) -> ssl.SSLSocket:
        if self._sock is None:
            raw = socket.create_connection((self.host, self.port), timeout=self._timeout)
            try:
                self._sock = self._context.wrap_socket(raw, server_hostname=self.host)
            except BaseException:
                raw.close()
                raise
            log.info("audit collector %s:%d connected", self.host, self.port)
        return self._sock

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                log.debug("closing the audit collector connection failed", exc_info=True)


__all__ = ["SyslogTlsSender", "client_tls_context"]
