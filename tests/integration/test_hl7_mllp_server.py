"""The threaded MLLP server and the blocking client, on real loopback sockets.

No sleeps: every wait is a blocking read with a timeout.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from pacsflow.adapters.hl7.mllp import FrameDecoder, MllpClient, MllpServer, frame
from pacsflow.domain.errors import TransientError

TIMEOUT = 5.0


def echo(message: bytes, peer: str) -> bytes:
    if message == b"BOOM":
        raise RuntimeError("handler failure")
    if message == b"SILENT":
        return b""
    return b"ACK:" + message


@pytest.fixture
def server() -> Iterator[MllpServer]:
    srv = MllpServer("127.0.0.1", 0, echo, max_message_bytes=1000)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


class Replies:
    """Reads framed replies from a raw socket, keeping any that arrive together."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._decoder = FrameDecoder()
        self._pending: list[bytes] = []

    def next(self) -> bytes:
        while not self._pending:
            data = self._sock.recv(4096)
            if not data:
                raise ConnectionError("closed before a reply")
            self._pending += self._decoder.feed(data)
        return self._pending.pop(0)


def raw_connection(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def test_client_gets_the_reply_to_each_message(server: MllpServer) -> None:
    with MllpClient("127.0.0.1", server.port, TIMEOUT) as client:
        assert client.send(b"MSH|one") == b"ACK:MSH|one"
        assert client.send(b"MSH|two") == b"ACK:MSH|two"


def test_server_reassembles_a_message_written_in_pieces(server: MllpServer) -> None:
    wire = b"junk" + frame(b"MSH|split|message") + frame(b"MSH|second")
    with raw_connection(server.port) as sock:
        for start in range(0, len(wire), 3):
            sock.sendall(wire[start : start + 3])

        replies = Replies(sock)
        assert replies.next() == b"ACK:MSH|split|message"
        assert replies.next() == b"ACK:MSH|second"


def test_a_failing_handler_sends_nothing_and_keeps_the_connection(server: MllpServer) -> None:
    with raw_connection(server.port) as sock:
        sock.sendall(frame(b"BOOM") + frame(b"SILENT") + frame(b"after"))

        assert Replies(sock).next() == b"ACK:after"

    with MllpClient("127.0.0.1", server.port, TIMEOUT) as client:
        assert client.send(b"again") == b"ACK:again"


def test_an_oversized_message_closes_the_connection_without_reply(server: MllpServer) -> None:
    with raw_connection(server.port) as sock:
        sock.sendall(b"\x0b" + b"x" * 2000)

        assert sock.recv(4096) == b""

    with MllpClient("127.0.0.1", server.port, TIMEOUT) as client:
        assert client.send(b"still serving") == b"ACK:still serving"


def test_accepted_sockets_use_tcp_nodelay() -> None:
    seen: list[int] = []

    class Spy(MllpServer):
        def _serve(self, connection) -> None:
            seen.append(connection.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            super()._serve(connection)

    srv = Spy("127.0.0.1", 0, echo)
    srv.start()
    try:
        with MllpClient("127.0.0.1", srv.port, TIMEOUT) as client:
            assert client.send(b"x") == b"ACK:x"
    finally:
        srv.stop()

    assert seen
    assert all(value != 0 for value in seen)


def test_stop_closes_open_connections_and_joins_threads() -> None:
    srv = MllpServer("127.0.0.1", 0, echo)
    srv.start()
    port = srv.port
    idle = raw_connection(port)
    with MllpClient("127.0.0.1", port, TIMEOUT) as client:
        assert client.send(b"x") == b"ACK:x"

        srv.stop()

        assert idle.recv(4096) == b""
        assert not srv.is_serving
        assert not [t for t in threading.enumerate() if t.name.startswith("mllp-")]
        with pytest.raises(ConnectionError):
            raw_connection(port)
        with pytest.raises(TransientError):
            client.send(b"after stop")
    idle.close()


def test_port_is_only_known_once_started() -> None:
    srv = MllpServer("127.0.0.1", 0, echo)

    with pytest.raises(RuntimeError, match="not started"):
        _ = srv.port
    with srv:
        assert srv.port > 0
        with pytest.raises(RuntimeError, match="already started"):
            srv.start()
    srv.stop()  # stopping twice is harmless


def test_client_reports_an_unreachable_peer_as_transient() -> None:
    srv = MllpServer("127.0.0.1", 0, echo)
    srv.start()
    port = srv.port
    srv.stop()

    with pytest.raises(TransientError, match="cannot connect"):
        MllpClient("127.0.0.1", port, TIMEOUT).send(b"x")


def test_client_reports_a_peer_that_closes_without_reply_as_transient() -> None:
    def close_without_reply(message: bytes, peer: str) -> bytes:
        return b""

    srv = MllpServer("127.0.0.1", 0, close_without_reply, max_message_bytes=5)
    srv.start()
    try:
        with (
            MllpClient("127.0.0.1", srv.port, TIMEOUT) as client,
            pytest.raises(TransientError, match="closed the connection"),
        ):
            client.send(b"far too long")
    finally:
        srv.stop()
