"""Whether a received data set is complete: a walk over its element headers in bounded memory.

A C-STORE data set that was cut short (a value shorter than its declared length, a sequence
or item of undefined length never closed) still yields its header to pydicom, so it must be
caught before it is stored. The walk reads only tags, VRs and lengths (through a 16 KiB
window) and moves past each defined-length value by position arithmetic: the cost grows with
the number of elements it enters, not with the size of the Pixel Data.

The walk follows pydicom's reading rules, so what passes here is what pydicom reads whole:

* File Meta Information (group 0002) is explicit VR little endian and ends at the first
  element of another group (PS3.10 7.1).
* Explicit VR elements with VR OB, OD, OF, OL, OV, OW, SQ, SV, UC, UN, UR, UT or UV have 2
  reserved bytes and a 4-byte length, the others a 2-byte length (PS3.5 7.1.2). Two bytes
  that are not capital letters mean that element was written in implicit VR, and so does the
  first element of the data set or of an item (PS3.5 6.2.2 for UN sequences).
* An undefined length holds items up to a Sequence Delimitation Item (PS3.5 7.5); an item of
  undefined length holds a data set up to an Item Delimitation Item. Encapsulated Pixel Data
  holds fragments, items of defined length (PS3.5 A.4).
* A defined-length value that lies wholly inside the file is complete, whatever it holds, so
  it is not entered.
* 2 to 7 zero bytes after the last element are trailing padding; longer runs of zeros are
  zero-length elements (0000,0000), as pydicom reads them (passed over a chunk at a time).
* Sequences may nest at most 100 levels deep. pydicom reads, writes and coerces a data set
  recursively, a few Python frames per level: an object nested deeper would be acknowledged
  and then fail every retrieval (RecursionError), so it is refused here, with the reason.
  A sequence of defined length is entered only when it is long enough to hide nesting past
  the limit (each level takes at least 16 bytes), so ordinary values are still skipped; what
  it holds beyond its nesting is not judged (as above, and pydicom reads what it can of it).
* Deflated Explicit VR Little Endian (PS3.5 A.5) is inflated in bounded chunks and walked as
  it streams; the deflate stream must end too (the readers are `dataset_sources.py`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from struct import Struct
from typing import BinaryIO, Final

from pydicom._dicom_dict import DicomDictionary
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

from pacsflow.adapters.dicom.dataset_sources import ByteSource, FileSource, InflatingSource
from pacsflow.domain.errors import MalformedMessage

_UNDEFINED: Final = 0xFFFFFFFF
_ITEM: Final = 0xFFFEE000
_ITEM_END: Final = 0xFFFEE00D
_SEQUENCE_END: Final = 0xFFFEE0DD
_PIXEL_DATA: Final = 0x7FE00010
_DELIMITER_GROUP: Final = 0xFFFE
_META_GROUP: Final = 0x0002
_PREAMBLE: Final = 128
_LONG_VRS: Final = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_ZERO_HEADER: Final = bytes(8)
#: How much of a run of zero bytes one step looks at (a multiple of a header's 8 bytes).
_ZERO_RUN_CHUNK: Final = 65536
#: The deepest sequence nesting accepted: what pydicom reads, coerces and writes back within
#: Python's default recursion limit with room to spare (about 2.5 to 5 frames per level; it
#: fails near 200 levels), and far beyond the few levels real objects use (an SR tree: ~10).
MAX_NESTING: Final = 100
#: The fewest bytes one more level of nesting takes: an item header and an element header.
_LEVEL_BYTES: Final = 16
#: Tags the data dictionary gives VR SQ: in implicit VR (or a UN value) only the dictionary
#: tells a sequence of defined length from another value, as pydicom decides.
_SEQUENCE_TAGS: Final = frozenset(tag for tag, entry in DicomDictionary.items() if entry[0] == "SQ")


@dataclass(frozen=True, slots=True)
class _Encoding:
    """How element headers are laid out: implicit or explicit VR, byte order."""

    is_implicit: bool
    #: tag and 4-byte length: implicit VR elements, items and delimiters
    tag_length: Struct
    #: tag, VR and 2-byte length: explicit VR elements
    tag_vr_length: Struct
    #: the 4-byte length after an explicit VR's 2 reserved bytes
    long_length: Struct

    def as_implicit(self) -> _Encoding:
        """The same byte order with implicit VR."""
        return _ENCODINGS[(True, self.tag_length.format[0] == "<")]

    def as_explicit(self) -> _Encoding:
        """The same byte order with explicit VR."""
        return _ENCODINGS[(False, self.tag_length.format[0] == "<")]


def _encoding(*, is_implicit: bool, is_little_endian: bool) -> _Encoding:
    order = "<" if is_little_endian else ">"
    return _Encoding(
        is_implicit, Struct(f"{order}HHL"), Struct(f"{order}HH2sH"), Struct(f"{order}L")
    )


_ENCODINGS: Final = {
    (implicit, little): _encoding(is_implicit=implicit, is_little_endian=little)
    for implicit in (True, False)
    for little in (True, False)
}
_EXPLICIT_LE: Final = _ENCODINGS[(False, True)]


class _TooDeep(MalformedMessage):
    """Sequences nest past MAX_NESTING."""


@dataclass(frozen=True, slots=True)
class _Frame:
    """What the walk is inside: a data set (top level or item) or the items of an element."""

    encoding: _Encoding
    #: the element whose value this is (0 for the top-level data set)
    owner: int
    is_item: bool = False
    is_sequence: bool = False
    #: encapsulated pixel data: items are fragments, all of defined length
    is_fragments: bool = False
    #: where a value of defined length ends (None: it ends with a delimiter)
    end: int | None = None


def check_complete(source: Path | BinaryIO, transfer_syntax: str) -> None:
    """Raise MalformedMessage unless a Part 10 file's data set is structurally complete."""
    if isinstance(source, Path):
        with source.open("rb") as fp:
            _check(fp, transfer_syntax)
    else:
        _check(source, transfer_syntax)


def _check(fp: BinaryIO, transfer_syntax: str) -> None:
    size = fp.seek(0, io.SEEK_END)
    start = _data_set_start(FileSource(fp, 0, size))
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        fp.seek(start)
        inflating = InflatingSource(fp)
        _walk(inflating, _EXPLICIT_LE)
        inflating.check_ended()
        return
    encoding = _ENCODINGS[
        (transfer_syntax == ImplicitVRLittleEndian, transfer_syntax != ExplicitVRBigEndian)
    ]
    _walk(FileSource(fp, start, size), encoding)


def _data_set_start(src: FileSource) -> int:
    """Where the data set begins: after the preamble, 'DICM' and the group 0002 elements."""
    if src.read(_PREAMBLE + 4)[_PREAMBLE:] != b"DICM":
        raise MalformedMessage("not a DICOM Part 10 file (no 'DICM' prefix)")
    while True:
        start = src.position
        head = src.read(8)
        if len(head) < 8:
            return start
        group, element, vr, length = _EXPLICIT_LE.tag_vr_length.unpack(head)
        tag = group << 16 | element
        if group != _META_GROUP:
            return start
        if vr in _LONG_VRS:
            more = src.read(4)
            if len(more) < 4:
                raise _cut_header(tag, 8 + len(more), 12)
            length = _EXPLICIT_LE.long_length.unpack(more)[0]
        elif not b"AA" <= vr <= b"ZZ":
            length = _EXPLICIT_LE.tag_length.unpack(head)[2]
        if length == _UNDEFINED:
            raise MalformedMessage(f"file meta element {_tag(tag)} has an undefined length")
        _skip(src, tag, length)


def _walk(src: ByteSource, encoding: _Encoding) -> None:
    """Follow the data set's elements to its end; raise at the first sign it was cut short."""
    stack = [_Frame(_first_element_encoding(src, encoding, is_item=False), owner=0)]
    depth = 0  # sequences the walk is inside
    while stack:
        frame = stack[-1]
        try:
            inner = (
                _walk_items(src, frame, depth)
                if frame.is_sequence
                else _walk_elements(src, frame, depth)
            )
        except _TooDeep:
            raise
        except MalformedMessage:
            entered = next((n for n, f in enumerate(stack) if f.end is not None), None)
            if entered is None:
                raise
            # Inside a value of defined length, entered only to measure its nesting: it is
            # complete whatever else it holds, once the file reaches its end.
            _move_to_end(src, stack[entered])
            del stack[entered:]
            depth = sum(f.is_sequence for f in stack)
            continue
        if inner is None:
            depth -= stack.pop().is_sequence
            continue
        if inner.is_sequence:
            depth += 1
            if depth > MAX_NESTING:
                raise _TooDeep(
                    f"sequences nested deeper than {MAX_NESTING} levels (at {_tag(inner.owner)})"
                )
        stack.append(inner)


def _move_to_end(src: ByteSource, frame: _Frame) -> None:
    """Continue after a value of defined length, wherever inside it the walk stopped."""
    assert frame.end is not None
    at = src.position
    if at > frame.end:
        src.unread(at - frame.end)
    else:
        _skip(src, frame.owner, frame.end - at)


def _at_end(src: ByteSource, frame: _Frame) -> bool:
    """True when a value of defined length has been walked to its end."""
    if frame.end is None or src.position < frame.end:
        return False
    if src.position > frame.end:
        raise MalformedMessage(f"the value of {_tag(frame.owner)} overruns its length")
    return True


def _walk_elements(src: ByteSource, frame: _Frame, depth: int) -> _Frame | None:
    """Move past a data set's elements up to its end (None) or a sequence to enter."""
    enc = frame.encoding
    read, skip = src.read, src.skip
    tag_length, tag_vr_length = enc.tag_length.unpack, enc.tag_vr_length.unpack
    is_bounded = frame.end is not None
    # A value at least this long may hide nesting past the limit (each level takes 16 bytes).
    enter_at = (MAX_NESTING - depth) * _LEVEL_BYTES
    while True:
        if is_bounded and _at_end(src, frame):
            return None
        head = read(8)
        if len(head) < 8:
            if frame.is_item:
                raise _unclosed(frame, len(head))
            # A lone zero byte is as likely the first byte of a cut tag (group 00xx in big
            # endian, xx00 in little endian) as padding.
            if len(head) == 1 or head.count(0) != len(head):
                raise MalformedMessage(
                    f"data set ends inside an element header ({len(head)} of 8 bytes)"
                )
            return None
        if head == _ZERO_HEADER and not is_bounded:
            _skip_zero_run(src)
            continue
        vr = None
        if enc.is_implicit:
            group, element, length = tag_length(head)
        else:
            group, element, vr, length = tag_vr_length(head)
            if vr in _LONG_VRS:
                more = read(4)
                if len(more) < 4:
                    raise _cut_header(group << 16 | element, 8 + len(more), 12)
                length = enc.long_length.unpack(more)[0]
            elif not b"AA" <= vr <= b"ZZ":
                # pydicom's reading of a writer that switched to implicit VR (pydicom #1067)
                group, element, length = tag_length(head)
                vr = None
        if group == _DELIMITER_GROUP:
            tag = group << 16 | element
            if tag == _ITEM_END and frame.is_item:
                return None
            raise MalformedMessage(f"{_tag(tag)} where a data element belongs")
        if length == _UNDEFINED:
            tag = group << 16 | element
            is_fragments = tag == _PIXEL_DATA or vr not in (None, b"SQ", b"UN")
            return _Frame(enc, tag, is_sequence=True, is_fragments=is_fragments)
        if length >= enter_at:
            tag = group << 16 | element
            if vr == b"SQ" or (vr in (None, b"UN") and tag in _SEQUENCE_TAGS):
                inner = enc if vr == b"SQ" else enc.as_implicit()
                return _Frame(inner, tag, is_sequence=True, end=src.position + length)
        skipped = skip(length)
        if skipped < length:
            raise _overrun(group << 16 | element, length, skipped)


def _walk_items(src: ByteSource, frame: _Frame, depth: int) -> _Frame | None:
    """Move past a value's items up to its end (None) or an item to enter."""
    enc = frame.encoding
    while True:
        if frame.end is not None and _at_end(src, frame):
            return None
        head = src.read(8)
        if len(head) < 8:
            raise _unclosed(frame, len(head))
        group, element, length = enc.tag_length.unpack(head)
        tag = group << 16 | element
        if tag == _SEQUENCE_END:
            return None
        if tag != _ITEM:
            raise MalformedMessage(f"{_tag(tag)} inside {_tag(frame.owner)}: not an item")
        if length == _UNDEFINED:
            if frame.is_fragments:
                raise MalformedMessage(f"a fragment of {_tag(frame.owner)} has no length")
            return _Frame(_first_element_encoding(src, enc, is_item=True), frame.owner, True)
        if not frame.is_fragments and length >= (MAX_NESTING - depth) * _LEVEL_BYTES:
            inner = _first_element_encoding(src, enc, is_item=True)
            return _Frame(inner, frame.owner, True, end=src.position + length)
        _skip(src, tag, length)


def _first_element_encoding(src: ByteSource, encoding: _Encoding, *, is_item: bool) -> _Encoding:
    """The VR encoding a data set really uses, judged by its first element as pydicom does.

    The top level may switch either way; an item of an explicit VR sequence may be implicit
    (PS3.5 6.2.2), never the other way round.
    """
    if is_item and encoding.is_implicit:
        return encoding
    head = src.read(6)
    src.unread(len(head))
    if len(head) < 6:
        return encoding
    is_explicit = 0x40 < head[4] < 0x5B and 0x40 < head[5] < 0x5B
    if is_explicit == (not encoding.is_implicit):
        return encoding
    return encoding.as_explicit() if is_explicit else encoding.as_implicit()


def _skip_zero_run(src: ByteSource) -> None:
    """Move past zero bytes in whole 8-byte steps, as if zero-length (0000,0000) elements.

    The same outcome as walking them one by one, without a Python step per 8 bytes: a peer
    cannot make the walk slow with a long run of zeros after the Pixel Data.
    """
    while chunk := src.read(_ZERO_RUN_CHUNK):
        zeros = len(chunk) - len(chunk.lstrip(b"\x00"))
        if zeros < len(chunk) or len(chunk) < _ZERO_RUN_CHUNK:
            # leave what does not fill a whole header to the walk (it may be a cut header)
            src.unread(len(chunk) - zeros // 8 * 8)
            return


def _skip(src: ByteSource, tag: int, length: int) -> None:
    skipped = src.skip(length)
    if skipped < length:
        raise _overrun(tag, length, skipped)


def _tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _overrun(tag: int, length: int, remaining: int) -> MalformedMessage:
    return MalformedMessage(f"{_tag(tag)} declares {length} bytes but only {remaining} remain")


def _cut_header(tag: int, have: int, need: int) -> MalformedMessage:
    return MalformedMessage(f"data set ends inside the header of {_tag(tag)} ({have}/{need})")


def _unclosed(frame: _Frame, have: int) -> MalformedMessage:
    what = "an item" if frame.is_item else "the value"
    cut = f" (inside a {have}-byte header)" if have else ""
    return MalformedMessage(f"data set ends in {what} of {_tag(frame.owner)}{cut}")


__all__ = ["MAX_NESTING", "check_complete"]
