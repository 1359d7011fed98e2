"""HL7 v2 character sets: MSH-18 (v2.5 ch. 2.15.9.18, table 0211) to Python codecs, decoding."""

from __future__ import annotations

from pacsflow.adapters.hl7.errors import UnsupportedCharset
from pacsflow.domain.errors import MalformedMessage, quote

# Table 0211 character sets pacsflow decodes -> Python codec. Keys are upper case.
_CHARSETS = {
    "": "ascii",
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "UNICODE UTF-8": "utf-8",
    "UNICODE": "utf-8",
    "UTF-8": "utf-8",
}
# What an ASCII-declared message is tried as when it holds bytes above 127, in order.
_ASCII_FALLBACKS = ("utf-8", "latin-1")


def python_codec(charset: str) -> str:
    """The Python codec for an MSH-18 value; UnsupportedCharset when pacsflow has none."""
    codec = _CHARSETS.get(charset.strip().upper())
    if codec is None:
        raise UnsupportedCharset(
            f"MSH-18 (character set) {quote(charset)} is not supported; send ASCII, "
            "8859/1 or UNICODE UTF-8",
            location="MSH-18",
        )
    return codec


def decode(raw: bytes, codec: str) -> tuple[str, str]:
    """Text of bytes in a codec, else as UTF-8 then latin-1; and the codec that worked."""
    if codec == "utf-8":
        # Declared UTF-8 that is not: refuse rather than store a garbled name.
        try:
            return raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError as exc:
            raise MalformedMessage(
                f"MSH-18 says UNICODE UTF-8, but byte {exc.start} is not valid UTF-8",
                location="MSH-18",
            ) from exc
    candidates = (codec, *_ASCII_FALLBACKS) if codec == "ascii" else (codec, "latin-1")
    for candidate in candidates:
        try:
            return raw.decode(candidate), candidate
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1"), "latin-1"  # pragma: no cover - latin-1 decodes any bytes


__all__ = ["decode", "python_codec"]
