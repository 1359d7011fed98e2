"""MLLP framing: the incremental frame decoder."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacsflow.adapters.hl7.errors import FrameTooLarge
from pacsflow.adapters.hl7.mllp import FrameDecoder, frame


def test_frame_wraps_message_in_vt_fs_cr() -> None:
    assert frame(b"MSH|x") == b"\x0bMSH|x\x1c\r"


def test_decoder_returns_complete_frames_and_drops_noise() -> None:
    decoder = FrameDecoder()

    assert decoder.feed(b"noise\x0bfirst\x1c\r\r\n\x0bsec") == [b"first"]
    assert decoder.is_in_frame
    assert decoder.feed(b"ond\x1c") == [b"second"]
    assert decoder.feed(b"\r") == []
    assert not decoder.is_in_frame
    assert decoder.discarded == len(b"noise") + len(b"\r\r\n") + len(b"\r")


def test_decoder_restarts_on_a_start_block_inside_a_frame() -> None:
    decoder = FrameDecoder()

    assert decoder.feed(b"\x0babandoned\x0bkept\x1c\r") == [b"kept"]


def test_decoder_rejects_an_oversized_message_and_resets() -> None:
    decoder = FrameDecoder(max_message_bytes=10)

    assert decoder.feed(b"\x0b" + b"x" * 6) == []
    with pytest.raises(FrameTooLarge):
        decoder.feed(b"x" * 6)

    assert not decoder.is_in_frame
    assert decoder.feed(b"\x0bsmall\x1c\r") == [b"small"]


def test_decoder_accepts_a_message_of_exactly_the_maximum() -> None:
    assert FrameDecoder(max_message_bytes=4).feed(b"\x0b1234\x1c\r") == [b"1234"]


def test_decoder_needs_a_positive_maximum() -> None:
    with pytest.raises(ValueError, match="positive"):
        FrameDecoder(0)


_payloads = st.binary(max_size=300).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b""))
_noise = st.binary(max_size=30).map(lambda b: b.replace(b"\x0b", b""))


@settings(database=None, deadline=None)
@given(
    messages=st.lists(_payloads, max_size=6),
    noises=st.lists(_noise, min_size=7, max_size=7),
    data=st.data(),
)
def test_decoder_reassembles_frames_under_any_chunking(
    messages: list[bytes], noises: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(n + frame(m) for n, m in zip(noises, messages, strict=False)) + noises[-1]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=30)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    decoder = FrameDecoder()

    received = [message for chunk in chunks for message in decoder.feed(chunk)]

    assert received == messages


# --- server and client -----------------------------------------------------------------------
