"""MLLP framing, a threaded MLLP server and a blocking MLLP client.

The Minimal Lower Layer Protocol (HL7 v2 Implementation Guide, Appendix C; MLLP Release 2)
wraps each message as <VT> message <FS><CR>. Bytes outside a frame are noise and are
discarded. The receiver answers each message on the same connection before reading the next
one (one message in flight). These constants live here and nowhere else.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from types import TracebackType

from pacsflow.adapters.hl7.errors import FrameTooLarge
from pacsflow.domain.errors import TransientError

log = logging.getLogger(__name__)

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\x0d"
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024

_RECV_BYTES = 64 * 1024
_ACCEPT_POLL_SECONDS = 0.5


def frame(message: bytes) -> bytes:
    """Wrap one message in an MLLP frame."""
    return START_BLOCK + message + END_BLOCK + CARRIAGE_RETURN


class FrameDecoder:
    """Reassembles MLLP frames from a byte stream cut into arbitrary chunks.

    Bytes outside a frame are dropped. A start block inside an open frame abandons the
    partial frame (the sender restarted). The frame ends at the end block; the carriage
    return after it is optional and, like any byte before the next start block, dropped.
    """

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        if max_message_bytes <= 0:
            raise ValueError("max_message_bytes must be positive")
        self._max = max_message_bytes
        self._buffer = bytearray()
        self._in_frame = False
        self.discarded = 0

    @property
    def is_in_frame(self) -> bool:
        """True while part of a message has been read but not its end block."""
        return self._in_frame

    def feed(self, data: bytes) -> list[bytes]:
        """Consume a chunk; the messages it completes, in order.

        Raises FrameTooLarge when a message grows past the maximum; the decoder is then reset.
        """
        messages: list[bytes] = []
        pos, size = 0, len(data)
        while pos < size:
            if not self._in_frame:
                start = data.find(START_BLOCK, pos)
                if start < 0:
                    self.discarded += size - pos
                    break
                self.discarded += start - pos
                self._in_frame = True
                self._buffer.clear()
                pos = start + 1
                continue
            end = data.find(END_BLOCK, pos)
            stop = size if end < 0 else end
            restart = data.find(START_BLOCK, pos, stop)
            if restart >= 0:
                self.discarded += len(self._buffer) + restart - pos
                self._buffer.clear()
                pos = restart + 1
                continue
            self._buffer += data[pos:stop]
            if len(self._buffer) > self._max:
                self._buffer.clear()
                self._in_frame = False
                raise FrameTooLarge(
                    f"the message is larger than the {self._max} bytes this listener accepts",
                    location="MLLP",
                )
            if end < 0:
                break
            messages.append(bytes(self._buffer))
            self._buffer.clear()
            self._in_frame = False
            pos = end + 1
        return messages


Handler = Callable[[bytes, str], bytes]


class _Connection:
    """One accepted connection: its socket (TLS once wrapped), peer and thread."""

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self.sock = sock
        self.peer = peer
        self.thread = threading.Thread()

    def shut_down(self) -> None:
        """Wake the thread blocked on this connection by shutting the socket down."""
        with contextlib.suppress(OSError):  # the peer may have gone already
            self.sock.shutdown(socket.SHUT_RDWR)


class MllpServer:
    """A threaded MLLP listener: one thread per connection, one message in flight each.

    `handle(message, peer)` gets the message without framing and returns the reply (an
    empty reply sends nothing). It is supposed to answer every message itself; if it
    raises, the traceback is logged, nothing is sent and the connection stays open.
    """

    def __init__(
        self,
        host: str,
        port: int,
        handle: Handler,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        idle_timeout: float | None = None,
    ) -> None:
        if max_message_bytes <= 0:
            raise ValueError("max_message_bytes must be positive")
        self._address = (host, port)
        self._handle = handle
        self._ssl_context = ssl_context
        self._max = max_message_bytes
        self._idle_timeout = idle_timeout
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()

    @property
    def port(self) -> int:
        """The bound TCP port (the real one when 0 was asked for); only once started."""
        if self._listener is None:
            raise RuntimeError("the MLLP server is not started")
        port: int = self._listener.getsockname()[1]
        return port

    @property
    def is_serving(self) -> bool:
        """True between start() and stop()."""
        return self._listener is not None and not self._stopping.is_set()

    def start(self) -> None:
        """Bind, listen and accept connections in a background thread; returns at once."""
        if self._listener is not None:
            raise RuntimeError("the MLLP server is already started")
        self._stopping.clear()
        listener = socket.create_server(self._address, reuse_port=False)
        listener.settimeout(_ACCEPT_POLL_SECONDS)
        self._listener = listener
        self._accept_thread = threading.Thread(
            target=self._accept_loop, args=(listener,), name="mllp-accept", daemon=True
        )
        self._accept_thread.start()
        log.info("MLLP listener on %s:%d", self._address[0], self.port)

    def stop(self, timeout: float | None = 10.0) -> None:
        """Close the listener and every open connection, and join their threads."""
        listener = self._listener
        if listener is None:
            return
        self._stopping.set()
        with contextlib.suppress(OSError):  # not connected: nothing to shut down
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout)
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.shut_down()
        for connection in connections:
            connection.thread.join(timeout)
            if connection.thread.is_alive():
                log.warning("MLLP connection %s did not stop in time", connection.peer)
        self._listener = None
        self._accept_thread = None

    def __enter__(self) -> MllpServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                conn, address = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if not self._stopping.is_set():
                    log.exception("MLLP listener failed; no longer accepting connections")
                return
            try:
                # Replies are small: without NODELAY each waits for the peer's delayed ACK.
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as exc:  # the peer is already gone
                log.info("MLLP connection from %s dropped at once: %s", address, exc)
                conn.close()
                continue
            connection = _Connection(conn, f"{address[0]}:{address[1]}")
            connection.thread = threading.Thread(
                target=self._serve,
                args=(connection,),
                name=f"mllp-{connection.peer}",
                daemon=True,
            )
            with self._lock:
                if self._stopping.is_set():
                    conn.close()
                    return
                self._connections.add(connection)
            connection.thread.start()

    def _serve(self, connection: _Connection) -> None:
        peer = connection.peer
        try:
            conn = connection.sock
            conn.settimeout(self._idle_timeout)
            if self._ssl_context is not None:
                # Wrapping detaches the plain socket; stop() must shut down the TLS one.
                wrapped = self._ssl_context.wrap_socket(
                    conn, server_side=True, do_handshake_on_connect=False
                )
                connection.sock = wrapped
                if self._stopping.is_set():
                    return
                wrapped.do_handshake()
            self._converse(connection.sock, peer)
        except FrameTooLarge:
            log.warning("MLLP peer %s sent an oversized message; connection closed", peer)
        except TimeoutError:
            log.info("MLLP peer %s idle for too long; connection closed", peer)
        except OSError as exc:  # includes ssl.SSLError: the peer reset or failed the handshake
            log.info("MLLP connection from %s ended: %s", peer, exc)
        finally:
            with self._lock:
                self._connections.discard(connection)
            connection.sock.close()

    def _converse(self, stream: socket.socket, peer: str) -> None:
        decoder = FrameDecoder(self._max)
        while not self._stopping.is_set():
            data = stream.recv(_RECV_BYTES)
            if not data:
                return
            for message in decoder.feed(data):
                reply = self._answer(message, peer)
                if reply:
                    stream.sendall(frame(reply))

    def _answer(self, message: bytes, peer: str) -> bytes:
        try:
            return self._handle(message, peer)
        except Exception:
            log.exception("MLLP handler failed for a message from %s; no reply sent", peer)
            return b""


class MllpClient:
    """A blocking MLLP client: send a message, wait for the one reply."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float = 30.0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._address = (host, port)
        self._timeout = timeout
        self._ssl_context = ssl_context
        self._server_hostname = server_hostname or host
        self._max = max_message_bytes
        self._socket: socket.socket | None = None
        self._decoder = FrameDecoder(max_message_bytes)

    def connect(self) -> None:
        """Open the connection now (send() opens it on first use otherwise)."""
        if self._socket is not None:
            return
        try:
            sock = socket.create_connection(self._address, timeout=self._timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl_context is not None:
                sock = self._ssl_context.wrap_socket(sock, server_hostname=self._server_hostname)
        except OSError as exc:
            raise TransientError(
                f"cannot connect to MLLP peer {self._address[0]}:{self._address[1]}: {exc}"
            ) from exc
        self._socket = sock
        self._decoder = FrameDecoder(self._max)

    def send(self, message: bytes) -> bytes:
        """Send one message and return the peer's reply, without framing.

        Raises TransientError when the peer cannot be reached, closes the connection or does
        not answer within the timeout; the connection is then closed.
        """
        self.connect()
        sock = self._socket
        assert sock is not None  # connect() either set it or raised
        try:
            sock.sendall(frame(message))
            while True:
                data = sock.recv(_RECV_BYTES)
                if not data:
                    raise TransientError("the MLLP peer closed the connection without a reply")
                replies = self._decoder.feed(data)
                if replies:
                    if len(replies) > 1:
                        log.warning("MLLP peer sent %d replies to one message", len(replies))
                    return replies[0]
        except TransientError:
            self.close()
            raise
        except (OSError, FrameTooLarge) as exc:
            self.close()
            raise TransientError(f"MLLP exchange failed: {exc}") from exc

    def close(self) -> None:
        """Close the connection, if open."""
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()

    def __enter__(self) -> MllpClient:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = [
    "CARRIAGE_RETURN",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "END_BLOCK",
    "START_BLOCK",
    "FrameDecoder",
    "Handler",
    "MllpClient",
    "MllpServer",
    "frame",
]
