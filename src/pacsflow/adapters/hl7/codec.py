"""HL7 v2 ER7 ("pipe and hat") parsing: bytes -> Message (building is `building.py`).

The character set is read from MSH-18 before the message is decoded (HL7 v2.5 ch. 2.15.9.18,
table 0211): MSH itself is ASCII, so the raw bytes are first read as latin-1 to find MSH-18.
Delimiters come from MSH-1 and MSH-2 (2.5 ch. 2.5.4; v2.7 adds a fifth, the truncation
character). Escape sequences (ch. 2.7, `er7.py`) are resolved after the message is split on
its delimiters, so an escaped delimiter never splits a value.

Positions follow HL7 notation: "PID-3.4.1" is segment PID, field 3, component 4, subcomponent
1 (all 1-based). Repetitions and segment occurrences are 0-based indexes. As in HAPI's
Terser, a position without component or subcomponent means the first one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pacsflow.adapters.hl7.charsets import decode, python_codec
from pacsflow.adapters.hl7.er7 import DEFAULT_DELIMITERS, SEGMENT_NAME, Delimiters, unescape
from pacsflow.adapters.hl7.errors import SegmentSequenceError, UnsupportedCharset
from pacsflow.domain.errors import MalformedMessage, quote

_LOCATION = re.compile(
    r"^([A-Z][A-Z0-9]{2})-([1-9][0-9]*)(?:\.([1-9][0-9]*)(?:\.([1-9][0-9]*))?)?$"
)

_HEADER_BYTES = 64 * 1024
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF8_BOM_AS_LATIN1 = _UTF8_BOM.decode("latin-1")


@dataclass(frozen=True, slots=True)
class Location:
    """A position in a message: segment, field and optionally component and subcomponent."""

    segment: str
    field: int
    component: int = 0
    subcomponent: int = 0

    @classmethod
    def parse(cls, text: str) -> Location:
        """Read "PID-3", "PID-3.4" or "PID-3.4.1"; ValueError when malformed."""
        match = _LOCATION.match(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not an HL7 position like 'OBR-18' or 'ZDS-1.1'")
        segment, fld, component, subcomponent = match.groups()
        return cls(segment, int(fld), int(component or 0), int(subcomponent or 0))

    def __str__(self) -> str:
        text = f"{self.segment}-{self.field}"
        if self.component:
            text += f".{self.component}"
            if self.subcomponent:
                text += f".{self.subcomponent}"
        return text


@dataclass(frozen=True, slots=True)
class Repetition:
    """One repetition of a field: its components, each a tuple of unescaped subcomponents."""

    components: tuple[tuple[str, ...], ...]

    def get(self, component: int = 1, subcomponent: int = 1) -> str:
        """The text at a component and subcomponent (1-based); '' when absent."""
        if component < 1 or component > len(self.components):
            return ""
        subcomponents = self.components[component - 1]
        if subcomponent < 1 or subcomponent > len(subcomponents):
            return ""
        return subcomponents[subcomponent - 1]

    def is_empty(self) -> bool:
        """True when no component carries text."""
        return not any(any(subs) for subs in self.components)


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment: its name and fields; `fields[0]` is field 1 (for MSH, the separator)."""

    name: str
    fields: tuple[tuple[Repetition, ...], ...]

    def repetitions(self, number: int) -> tuple[Repetition, ...]:
        """The repetitions of a field (1-based); empty when the field is empty or absent."""
        if number < 1 or number > len(self.fields):
            return ()
        return self.fields[number - 1]

    def get(
        self, number: int, component: int = 1, subcomponent: int = 1, *, repetition: int = 0
    ) -> str:
        """The text at a field, component and subcomponent; '' when absent."""
        repetitions = self.repetitions(number)
        if repetition < 0 or repetition >= len(repetitions):
            return ""
        return repetitions[repetition].get(component or 1, subcomponent or 1)


@dataclass(frozen=True, slots=True)
class Header:
    """What the MSH segment says about a message, including what its ACK needs."""

    delimiters: Delimiters = DEFAULT_DELIMITERS
    sending_application: tuple[str, ...] = ()
    sending_facility: tuple[str, ...] = ()
    receiving_application: tuple[str, ...] = ()
    receiving_facility: tuple[str, ...] = ()
    control_id: str = ""
    message_code: str = ""
    trigger_event: str = ""
    message_structure: str = ""
    processing_id: str = ""
    version: str = ""
    accept_ack_type: str = ""
    application_ack_type: str = ""
    charset: str = ""

    @property
    def sender_application(self) -> str:
        """MSH-3 as one text (HD components joined by ^)."""
        return _join_hd(self.sending_application)

    @property
    def sender_facility(self) -> str:
        """MSH-4 as one text (HD components joined by ^)."""
        return _join_hd(self.sending_facility)

    @property
    def message_type(self) -> str:
        """MSH-9 code and trigger event, e.g. 'ADT^A01'."""
        if not self.trigger_event:
            return self.message_code
        return f"{self.message_code}^{self.trigger_event}"

    @property
    def is_enhanced_mode(self) -> bool:
        """True when the sender asked for enhanced acknowledgment (MSH-15 AL, ER or SU)."""
        return self.accept_ack_type.upper() in ("AL", "ER", "SU")

    @classmethod
    def from_segment(cls, msh: Segment, delimiters: Delimiters) -> Header:
        """Read the header fields of a parsed MSH segment."""

        def hd(number: int) -> tuple[str, ...]:
            reps = msh.repetitions(number)
            return tuple(c[0] if c else "" for c in reps[0].components) if reps else ()

        return cls(
            delimiters=delimiters,
            sending_application=hd(3),
            sending_facility=hd(4),
            receiving_application=hd(5),
            receiving_facility=hd(6),
            control_id=msh.get(10),
            message_code=msh.get(9, 1).upper(),
            trigger_event=msh.get(9, 2).upper(),
            message_structure=msh.get(9, 3).upper(),
            processing_id=msh.get(11),
            version=msh.get(12),
            accept_ack_type=msh.get(15),
            application_ack_type=msh.get(16),
            charset=msh.get(18),
        )


@dataclass(frozen=True, slots=True)
class Message:
    """A parsed HL7 v2 message.

    `charset` is the Python codec the text was decoded with; `is_charset_guessed` is True when
    that differs from what MSH-18 declared (an ASCII message holding UTF-8 or latin-1 bytes).
    """

    segments: tuple[Segment, ...]
    delimiters: Delimiters = DEFAULT_DELIMITERS
    charset: str = "ascii"
    is_charset_guessed: bool = False
    msh: Header = field(default_factory=Header)

    def segment(self, name: str, index: int = 0) -> Segment | None:
        """The index-th (0-based) segment with this name, or None."""
        found = [s for s in self.segments if s.name == name]
        return found[index] if 0 <= index < len(found) else None

    def segments_named(self, name: str) -> tuple[Segment, ...]:
        """Every segment with this name, in order."""
        return tuple(s for s in self.segments if s.name == name)

    def get(self, location: str, *, repetition: int = 0, occurrence: int = 0) -> str:
        """The text at a position like 'PID-3' or 'PID-3.4.1'; '' when absent."""
        return get_in(
            self.segments, Location.parse(location), repetition=repetition, occurrence=occurrence
        )

    def repetitions(self, location: str, *, occurrence: int = 0) -> tuple[Repetition, ...]:
        """Every repetition of a field, e.g. the identifiers of 'PID-3'."""
        where = Location.parse(location)
        found = [s for s in self.segments if s.name == where.segment]
        if not 0 <= occurrence < len(found):
            return ()
        return found[occurrence].repetitions(where.field)


def get_in(
    segments: Iterable[Segment], location: Location, *, repetition: int = 0, occurrence: int = 0
) -> str:
    """The text at a position in the occurrence-th segment of its name among segments."""
    found = [s for s in segments if s.name == location.segment]
    if not 0 <= occurrence < len(found):
        return ""
    return found[occurrence].get(
        location.field, location.component, location.subcomponent, repetition=repetition
    )


def parse(raw: bytes) -> Message:
    """Parse one ER7-encoded message; MalformedMessage (with the position) when it cannot be."""
    declared = python_codec(_declared_charset(raw))
    codec = declared
    if raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM) :]
        codec = "utf-8" if codec == "ascii" else codec
    text, used = decode(raw, codec)
    lines = _split_segments(text.lstrip())
    if not lines or not lines[0].startswith("MSH"):
        raise SegmentSequenceError("the message must start with an MSH segment", location="MSH")
    delimiters = _read_delimiters(lines[0])
    segments = tuple(
        _parse_segment(line, number, delimiters, used) for number, line in enumerate(lines, 1)
    )
    header = Header.from_segment(segments[0], delimiters)
    return Message(
        segments=segments,
        delimiters=delimiters,
        charset=used,
        is_charset_guessed=used != declared,
        msh=header,
    )


def read_header(raw: bytes) -> Header | None:
    """Best-effort MSH of a message that may not parse as a whole; None without an MSH."""
    line = _first_segment(raw)
    if not line.startswith("MSH") or len(line) < 4 or line[3].isalnum() or line[3] in " \t":
        return None
    try:
        delimiters = _read_delimiters(line)
    except MalformedMessage:
        delimiters = Delimiters(field=line[3])
        if line[3] in delimiters.encoding_characters:
            return None
    try:
        codec = python_codec(_msh18(line, delimiters))
    except UnsupportedCharset:
        codec = "latin-1"
    line = line.encode("latin-1").decode(codec, errors="replace")
    return Header.from_segment(_parse_segment(line, 1, delimiters, codec), delimiters)


# --- parsing internals -----------------------------------------------------------------------


def _join_hd(components: tuple[str, ...]) -> str:
    return "^".join(components).rstrip("^")


def _split_segments(text: str) -> list[str]:
    normalized = text.replace("\r\n", "\r").replace("\n", "\r")
    return [line for line in normalized.split("\r") if line.strip()]


def _first_segment(raw: bytes) -> str:
    """The first segment of raw bytes read as latin-1 (MSH is ASCII); '' when there is none."""
    text = raw[:_HEADER_BYTES].decode("latin-1")
    if text.startswith(_UTF8_BOM_AS_LATIN1):
        text = text[len(_UTF8_BOM_AS_LATIN1) :]
    lines = _split_segments(text.lstrip())
    return lines[0] if lines else ""


def _msh18(line: str, d: Delimiters) -> str:
    """The default character set of MSH-18: its first repetition's first component."""
    parts = line.split(d.field)
    # parts[0] is "MSH" and parts[1] is MSH-2, so MSH-n is parts[n - 1].
    value = parts[17] if len(parts) > 17 else ""
    return value.split(d.repetition)[0].split(d.component)[0].strip()


def _declared_charset(raw: bytes) -> str:
    line = _first_segment(raw)
    if not line.startswith("MSH"):
        return ""  # parse() reports what is wrong with the MSH segment
    try:
        return _msh18(line, _read_delimiters(line))
    except MalformedMessage:
        return ""


def _read_delimiters(line: str) -> Delimiters:
    if len(line) < 4:
        raise MalformedMessage("MSH-1 (field separator) is missing", location="MSH-1")
    separator = line[3]
    if separator.isalnum() or separator in " \t":
        raise MalformedMessage(
            f"MSH-1 (field separator) {quote(separator)} is not a valid separator", location="MSH-1"
        )
    encoding = line[4:].split(separator, 1)[0]
    if len(encoding) not in (4, 5):
        raise MalformedMessage(
            f"MSH-2 (encoding characters) {quote(encoding)} must be 4 characters, like ^~\\&",
            location="MSH-2",
        )
    chars = separator + encoding
    if len(set(chars)) != len(chars) or any(c.isalnum() or c in " \t" for c in encoding):
        raise MalformedMessage(
            f"MSH-2 (encoding characters) {quote(encoding)} must be distinct non-alphanumeric "
            "characters, like ^~\\&",
            location="MSH-2",
        )
    return Delimiters(
        field=separator,
        component=encoding[0],
        repetition=encoding[1],
        escape=encoding[2],
        subcomponent=encoding[3],
        truncation=encoding[4] if len(encoding) == 5 else "",
    )


def _parse_segment(line: str, number: int, d: Delimiters, charset: str) -> Segment:
    name = line[:3]
    if not SEGMENT_NAME.match(name) or (len(line) > 3 and line[3] != d.field):
        raise MalformedMessage(
            f"segment {number} ({quote(line[:8])}) does not start with a 3-character segment name",
            location=f"segment {number}",
        )
    if number > 1 and name == "MSH":
        raise SegmentSequenceError(
            f"segment {number} is a second MSH; send one message per MLLP frame",
            location=f"MSH segment {number}",
        )
    raw_fields = line.split(d.field)[1:]
    if name == "MSH":
        # MSH-1 is the separator itself and MSH-2 the encoding characters: never split them.
        fields: list[tuple[Repetition, ...]] = [
            (Repetition(((d.field,),)),),
            (Repetition(((raw_fields[0] if raw_fields else "",),)),),
        ]
        fields += [_parse_field(f, d, charset) for f in raw_fields[1:]]
    else:
        fields = [_parse_field(f, d, charset) for f in raw_fields]
    return Segment(name, tuple(fields))


def _parse_field(text: str, d: Delimiters, charset: str) -> tuple[Repetition, ...]:
    if not text:
        return ()
    return tuple(
        Repetition(
            tuple(
                tuple(unescape(sub, d, charset) for sub in component.split(d.subcomponent))
                for component in rep.split(d.component)
            )
        )
        for rep in text.split(d.repetition)
    )


__all__ = [
    "Header",
    "Location",
    "Message",
    "Repetition",
    "Segment",
    "get_in",
    "parse",
    "read_header",
]
