"""The identifying attributes of a received file, read without pydicom when that is exact.

`datasets.read_header` (pydicom) costs about 0.3 ms per file and reading its ~20 values
another 0.2 ms: more than storing a small object. Most received files are plain: little
endian, the default, Latin-1 or UTF-8 character set, single values. For those this reader
walks the element headers itself (tags ascending, so it stops at the first tag past the last
one wanted, long before Pixel Data) and decodes the few values the index keeps.

Whenever a file is anything else (big endian or deflated, another character set or ISO 2022
escapes, a multi-valued or non-ASCII value where pydicom would decide, an element header that
is not plain explicit/implicit VR, a header larger than 16 MiB) it answers None and the caller
uses pydicom. Tests compare both readers on every file pydicom ships.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from struct import Struct
from typing import BinaryIO, Final

from pydicom.datadict import dictionary_VR
from pydicom.tag import Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

from pacsflow.adapters.dicom.datasets import HEADER_KEYWORDS

_WANTED: Final = {int(Tag(keyword)): keyword for keyword in HEADER_KEYWORDS}
_VR: Final = {tag: dictionary_VR(tag) for tag in _WANTED}
_LAST: Final = max(_WANTED)
_TEXT_VRS: Final = frozenset({"SH", "LO", "ST", "LT", "UT", "PN", "UC"})
_LONG_VRS: Final = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_UNDEFINED: Final = 0xFFFFFFFF
_ITEM: Final = 0xFFFEE000
_ITEM_END: Final = 0xFFFEE00D
_SEQUENCE_END: Final = 0xFFFEE0DD
_CHARSET_TAG: Final = 0x00080005
#: Character sets decoded here (PS3.3 C.12.1.1.2); others go to pydicom.
_CODECS: Final = {"": "ascii", "ISO_IR 6": "ascii", "ISO_IR 100": "latin_1", "ISO_IR 192": "utf-8"}
_U16: Final = Struct("<H")
_U32: Final = Struct("<L")
_TAG: Final = Struct("<HH")
_IMPLICIT: Final = Struct("<HHL")
_EXPLICIT: Final = Struct("<HH2sH")
_READ: Final = 65536
_MAX_HEADER: Final = 16 * 1024 * 1024
_MAX_DEPTH: Final = 16


class _NotPlain(Exception):
    """The file needs pydicom to be read exactly."""


class _Buffer:
    """The start of a file, read further on demand (at most 16 MiB)."""

    def __init__(self, fp: BinaryIO) -> None:
        self._fp = fp
        self.data = fp.read(_READ)
        self.eof = len(self.data) < _READ

    def need(self, end: int) -> bool:
        """Make bytes up to end available; False when the file is shorter."""
        while len(self.data) < end and not self.eof:
            if end > _MAX_HEADER:
                raise _NotPlain
            more = self._fp.read(max(end - len(self.data), _READ))
            self.eof = not more
            self.data += more
        return len(self.data) >= end

    def u16(self, at: int) -> int:
        return int(_U16.unpack_from(self.data, at)[0])

    def u32(self, at: int) -> int:
        return int(_U32.unpack_from(self.data, at)[0])

    def tag(self, at: int) -> int:
        group, element = _TAG.unpack_from(self.data, at)
        return int(group << 16 | element)


def read_identifying(source: Path | bytes) -> dict[str, str] | None:
    """The header attributes `arrived_instance` reads, as stripped strings; None: use pydicom.

    source is a Part 10 file, or its bytes.
    """
    try:
        if isinstance(source, bytes):
            raw = _walk(_Buffer(BytesIO(source)))
        else:
            with source.open("rb") as fp:
                raw = _walk(_Buffer(fp))
        return None if raw is None else _decode(raw)
    except (_NotPlain, UnicodeDecodeError, OSError):
        return None


def _walk(buf: _Buffer) -> dict[int, bytes] | None:
    if not buf.need(132) or buf.data[128:132] != b"DICM":
        return None
    pos, syntax = 132, ""
    while buf.need(pos + 8) and buf.u16(pos) == 0x0002:  # File Meta: explicit VR LE
        tag, value_at, length = _explicit(buf, pos)
        if length == _UNDEFINED or not buf.need(value_at + length):
            return None
        if tag == 0x00020010:
            syntax = buf.data[value_at : value_at + length].rstrip(b"\x00 ").decode("ascii")
        pos = value_at + length
    if syntax in ("", DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian):
        return None
    implicit = syntax == ImplicitVRLittleEndian
    values: dict[int, bytes] = {}
    while buf.need(pos + 8):
        tag, value_at, length = _element(buf, pos, implicit)
        if tag > _LAST:
            break
        if length == _UNDEFINED:
            if tag in _WANTED:
                return None
            pos = _skip_sequence(buf, value_at, implicit, 0)
            continue
        if tag in _WANTED:
            if not buf.need(value_at + length):
                raise _NotPlain  # cut short: pydicom decides
            values[tag] = buf.data[value_at : value_at + length]
        pos = value_at + length
    else:
        if pos != len(buf.data):
            raise _NotPlain  # the file ends inside an element
    return values


def _element(buf: _Buffer, pos: int, implicit: bool) -> tuple[int, int, int]:
    """An element header at pos: (tag, where its value starts, its length)."""
    if implicit:
        group, element, length = _IMPLICIT.unpack_from(buf.data, pos)
        return group << 16 | element, pos + 8, length
    return _explicit(buf, pos)


def _explicit(buf: _Buffer, pos: int) -> tuple[int, int, int]:
    group, element, vr, length = _EXPLICIT.unpack_from(buf.data, pos)
    if not (vr.isalpha() and vr.isupper()):
        raise _NotPlain  # implicit VR inside explicit (UN), or not an element header
    if vr in _LONG_VRS:
        if not buf.need(pos + 12):
            raise _NotPlain
        return group << 16 | element, pos + 12, buf.u32(pos + 8)
    return group << 16 | element, pos + 8, length


def _skip_sequence(buf: _Buffer, pos: int, implicit: bool, depth: int) -> int:
    """Where the undefined-length sequence (or encapsulated value) starting at pos ends."""
    if depth > _MAX_DEPTH:
        raise _NotPlain
    while True:
        if not buf.need(pos + 8):
            raise _NotPlain
        tag, length = buf.tag(pos), buf.u32(pos + 4)
        pos += 8
        if tag == _SEQUENCE_END:
            return pos
        if tag != _ITEM:
            raise _NotPlain
        if length != _UNDEFINED:
            pos += length
            continue
        while True:  # an item of undefined length: its elements up to the item delimiter
            if not buf.need(pos + 8):
                raise _NotPlain
            if buf.tag(pos) == _ITEM_END:
                pos += 8
                break
            _, value_at, length = _element(buf, pos, implicit)
            pos = (
                _skip_sequence(buf, value_at, implicit, depth + 1)
                if length == _UNDEFINED
                else value_at + length
            )


def _decode(raw: dict[int, bytes]) -> dict[str, str] | None:
    charset = raw.get(_CHARSET_TAG, b"").decode("ascii").strip(" \x00")
    codec = _CODECS.get(charset)
    if codec is None:
        return None  # another or several character sets: pydicom's rules
    out: dict[str, str] = {}
    for tag, value in raw.items():
        keyword = _WANTED[tag]
        if b"\\" in value or b"\x1b" in value:
            return None  # several values, or an escape sequence
        text = value.decode(codec if _VR[tag] in _TEXT_VRS else "ascii")
        out[keyword] = text.strip(" \x00")
    return out


__all__ = ["read_identifying"]
