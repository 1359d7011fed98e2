"""Hostile MLLP input against a running node: every complete frame is answered, the listener lives.

The expected number of answers comes from MLLP framing alone (HL7 v2 Appendix C, Release 2):
a frame opens at <VT> and closes at <FS>; bytes outside a frame are noise; a <VT> inside an
open frame abandons it. Each closed frame must get exactly one ACK whose MSA-1 is a table 0008
code, and a frame that does not even start with MSH can never be accepted.
"""

from __future__ import annotations

import socket
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pacsflow.app import Pacsflow
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier

VT, FS, CR = b"\x0b", b"\x1c", b"\r"
ACK_CODES = {"AA", "AE", "AR", "CA", "CE", "CR"}
IO_TIMEOUT = 20.0
FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _frame(message: bytes) -> bytes:
    return VT + message + FS + CR


def _control_id() -> str:
    return uuid.uuid4().hex[:20]


def _msh(
    control_id: str,
    *,
    message_type: str = "ADT^A01",
    charset: str = "",
    encoding: str = "^~\\&",
    separator: str = "|",
) -> str:
    fields = ["HIS", "H", "PACSFLOW", "R", "20261128090000", "", message_type, control_id]
    fields += ["P", "2.5.1"]
    if charset:
        fields += ["", "", "", "", "", "", "", charset]
    return "MSH" + separator + encoding + separator + separator.join(fields)


def _adt(control_id: str, patient_id: str = "9") -> bytes:
    return f"{_msh(control_id)}\rPID|1||{patient_id}^^^H||OK^FINE\r".encode("ascii")


def complete_frames(stream: bytes) -> list[bytes]:
    """The frames a conforming MLLP receiver must answer, by the framing rules alone."""
    frames: list[bytes] = []
    current: bytearray | None = None
    for byte in stream:
        if byte == VT[0]:
            current = bytearray()  # opens a frame, or abandons the open one
        elif byte == FS[0]:
            if current is not None:
                frames.append(bytes(current))
            current = None
        elif current is not None:
            current.append(byte)
    return frames


def _replies(data: bytes) -> list[bytes]:
    return complete_frames(data)


def ack_code(ack: bytes) -> str:
    """MSA-1 of an ACK, whatever field separator its MSH uses ('' when there is none)."""
    text = ack.decode("latin-1")
    if not text.startswith("MSH") or len(text) < 4:
        return ""
    separator = text[3]
    for segment in text.split("\r"):
        if segment.startswith("MSA" + separator):
            return segment.split(separator)[1]
    return ""


def converse(port: int, stream: bytes, timeout: float = IO_TIMEOUT) -> list[bytes]:
    """Send the stream, half-close, and return every framed reply until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(stream)
        sock.shutdown(socket.SHUT_WR)
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
    return _replies(bytes(received))


def assert_answered(port: int, stream: bytes) -> None:
    """Every complete frame got one ACK; non-HL7 frames were never accepted."""
    frames = complete_frames(stream)
    replies = converse(port, stream)
    assert len(replies) == len(frames), (len(replies), len(frames), stream[:200])
    for sent, reply in zip(frames, replies, strict=True):
        code = ack_code(reply)
        assert code in ACK_CODES, (sent[:200], reply[:300])
        if not sent.startswith(b"MSH"):
            assert code not in {"AA", "CA"}, (sent[:200], reply[:300])


def assert_still_serving(node: Pacsflow) -> None:
    """A valid ADT on a new connection is accepted (AA) within one second."""
    patient = f"P{uuid.uuid4().hex[:10]}"
    started = time.monotonic()
    replies = converse(node.hl7.port, _frame(_adt(_control_id(), patient)), timeout=5)
    elapsed = time.monotonic() - started
    assert [ack_code(r) for r in replies] == ["AA"], replies
    assert elapsed < 1.0, f"valid ADT answered after {elapsed:.2f} s"
    found = node.queries.patient(PatientIdentifier(PatientId(patient), Issuer("H")))
    assert found is not None
    assert found.demographics.name.family == "OK"


# -- strategies -------------------------------------------------------------------------------

_text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60
)  # any character, CR, delimiters and MLLP bytes included

_raw_streams = st.lists(
    st.one_of(
        st.binary(max_size=80),
        st.sampled_from([VT, FS, CR, b"MSH|^~\\&|", b"\x00", b"\xff\xfe"]),
    ),
    max_size=30,
).map(b"".join)


@st.composite
def _msh_with_garbage_segments(draw: st.DrawFn) -> bytes:
    segments = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["PID", "PV1", "ORC", "OBR", "ZZZ", "", "pid", "MSH"]), _text
            ).map(lambda t: t[0] + "|" + t[1]),
            max_size=12,
        )
    )
    kind = draw(st.sampled_from(["ADT^A01", "ADT^A08", "ORM^O01", "OMI^O23", "ADT^A40", ""]))
    body = "\r".join([_msh(_control_id(), message_type=kind), *segments])
    return body.encode("utf-8")


@st.composite
def _weird_msh2(draw: st.DrawFn) -> bytes:
    punctuation = st.sampled_from(list("|^~\\&#!*$%\t \r\x00\x0b\x1cA1"))
    separator = draw(punctuation)
    encoding = "".join(draw(st.lists(punctuation, max_size=7)))
    rest = draw(_text)
    head = _msh(_control_id(), encoding=encoding, separator=separator)
    return (head + rest + "\rPID|1||42^^^H||X^Y\r").encode("utf-8")


@st.composite
def _bad_charset(draw: st.DrawFn) -> bytes:
    charset = draw(
        st.sampled_from(["UNICODE UTF-8", "8859/1", "ASCII", "GB 18030-2000", "NOPE", "UNICODE"])
    )
    junk = draw(st.binary(min_size=1, max_size=40).filter(lambda b: b"\r" not in b))
    head = _msh(_control_id(), charset=charset).encode("ascii")
    return head + b"\rPID|1||77^^^H||" + junk + b"\xc3\x28\xff^NAME\r"


@st.composite
def _many_segments(draw: st.DrawFn) -> bytes:
    count = draw(st.integers(1000, 6000))
    name = draw(st.sampled_from(["NTE", "PID", "OBX", "ZXX"]))
    lines = [_msh(_control_id()), "PID|1||5^^^H||MANY^SEGS"]
    lines += [f"{name}|{i}||x" for i in range(count)]
    return "\r".join(lines).encode("ascii")


@st.composite
def _huge_field(draw: st.DrawFn) -> bytes:
    size = draw(st.integers(64 * 1024, 3 * 1024 * 1024))
    where = draw(st.sampled_from(["name", "id", "segment", "msh"]))
    filler = draw(st.sampled_from(["X", "^", "~", "\\", "&"])) * size
    msh = _msh(_control_id())
    if where == "msh":
        msh += "|" + filler
    pid = {
        "name": f"PID|1||6^^^H||{filler}^A",
        "id": f"PID|1||{filler}^^^H||A^B",
        "segment": "PID|1||6^^^H||A^B\rNTE|1||" + filler,
        "msh": "PID|1||6^^^H||A^B",
    }[where]
    return f"{msh}\r{pid}\r".encode("ascii")


_messages = st.one_of(
    _msh_with_garbage_segments(),
    _weird_msh2(),
    _bad_charset(),
    st.binary(min_size=0, max_size=300),
)


@st.composite
def _framings(draw: st.DrawFn, messages: st.SearchStrategy[bytes]) -> bytes:
    """A few messages, each framed properly, with a nested VT, or without FS."""
    parts = []
    for message in draw(st.lists(messages, min_size=1, max_size=4)):
        how = draw(st.sampled_from(["plain", "plain", "nested_vt", "no_fs", "noise_before"]))
        if how == "nested_vt":
            cut = draw(st.integers(0, len(message)))
            parts.append(VT + message[:cut] + VT + message[cut:] + FS + CR)
        elif how == "no_fs":
            parts.append(VT + message)
        elif how == "noise_before":
            parts.append(draw(st.binary(max_size=20)).replace(VT, b"") + _frame(message))
        else:
            parts.append(_frame(message))
    return b"".join(parts)


# -- tests ------------------------------------------------------------------------------------


@FUZZ
@given(stream=_raw_streams)
def test_random_bytes_get_an_ack_per_frame_and_the_listener_keeps_serving(
    node: Pacsflow, stream: bytes
) -> None:
    assert_answered(node.hl7.port, stream)
    assert_still_serving(node)


@FUZZ
@given(stream=_framings(_messages))
def test_malformed_messages_each_get_a_table_0008_ack(node: Pacsflow, stream: bytes) -> None:
    assert_answered(node.hl7.port, stream)
    assert_still_serving(node)


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(message=st.one_of(_many_segments(), _huge_field()))
def test_thousands_of_segments_and_huge_fields_are_answered(node: Pacsflow, message: bytes) -> None:
    assert_answered(node.hl7.port, _frame(message))
    assert_still_serving(node)


def test_a_missing_fs_is_abandoned_by_the_next_vt(node: Pacsflow) -> None:
    control_id = _control_id()
    stream = VT + b"MSH|^~\\&|HALF|" + _frame(_adt(control_id))
    replies = converse(node.hl7.port, stream)
    assert [ack_code(r) for r in replies] == ["AA"]
    assert f"MSA|AA|{control_id}".encode() in replies[0]


@pytest.mark.parametrize("with_fs", [True, False])
def test_an_oversized_message_closes_its_connection_only(node: Pacsflow, with_fs: bool) -> None:
    body = _adt(_control_id()) + b"NTE|1||" + b"X" * (16 * 1024 * 1024 + 1024) + b"\r"
    stream = VT + body + (FS + CR if with_fs else b"")
    received = bytearray()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", node.hl7.port), timeout=IO_TIMEOUT) as sock:
        try:
            sock.sendall(stream)
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                received += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass  # closed while we were still sending: the expected outcome
    assert time.monotonic() - started < IO_TIMEOUT
    assert _replies(bytes(received)) == [], "an oversized message must not be answered"
    assert_still_serving(node)


def test_many_hostile_connections_at_once_leave_the_listener_serving(node: Pacsflow) -> None:
    """Half-open frames on idle connections do not stop others from being served."""
    socks = [socket.create_connection(("127.0.0.1", node.hl7.port), timeout=5) for _ in range(20)]
    try:
        for sock in socks:
            sock.sendall(VT + b"MSH|^~\\&|STUCK")  # an open frame that never ends
        assert_still_serving(node)
    finally:
        for sock in socks:
            sock.close()
    assert_still_serving(node)
