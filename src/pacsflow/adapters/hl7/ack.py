"""HL7 v2 acknowledgments: MSH + MSA, and an ERR segment when something is wrong.

The ACK goes back to the sender (MSH-3/4 and 5/6 swapped), names the message it answers in
MSA-2 and uses its version, processing id and character set. When the sender asked for
enhanced-mode acknowledgment (MSH-15 AL, ER or SU; HL7 v2.5 ch. 2.9.3) the codes are the
commit codes CA/CE/CR, otherwise the original-mode AA/AE/AR. ERR is written as v2.5 defines it
(ERR-2 location, ERR-3 table 0357 code, ERR-4 severity, ERR-8 user message) for v2.5 and later,
and as the v2.3/v2.4 ERR-1 "error code and location" otherwise.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pacsflow.adapters.hl7.building import (
    Component,
    FieldValue,
    encode_message,
    encode_msh,
    encode_segment,
)
from pacsflow.adapters.hl7.charsets import python_codec
from pacsflow.adapters.hl7.codec import (
    Header,
    Location,
    read_header,
)
from pacsflow.adapters.hl7.errors import UnsupportedCharset

DEFAULT_VERSION = "2.5.1"
_ERR_V25 = (2, 5)


class AckCode(enum.StrEnum):
    """MSA-1 acknowledgment code (HL7 table 0008)."""

    AA = "AA"
    AE = "AE"
    AR = "AR"
    CA = "CA"
    CE = "CE"
    CR = "CR"

    def in_mode(self, header: Header | None) -> AckCode:
        """The code to send: the commit variant when the sender asked for enhanced mode."""
        if header is not None and header.is_enhanced_mode and self.value[0] == "A":
            return AckCode("C" + self.value[1])
        return self


class ErrorCode(enum.IntEnum):
    """HL7 table 0357, message error condition codes."""

    SEGMENT_SEQUENCE_ERROR = 100
    REQUIRED_FIELD_MISSING = 101
    DATA_TYPE_ERROR = 102
    TABLE_VALUE_NOT_FOUND = 103
    UNSUPPORTED_MESSAGE_TYPE = 200
    UNSUPPORTED_EVENT_CODE = 201
    UNSUPPORTED_PROCESSING_ID = 202
    UNSUPPORTED_VERSION_ID = 203
    UNKNOWN_KEY_IDENTIFIER = 204
    DUPLICATE_KEY_IDENTIFIER = 205
    APPLICATION_RECORD_LOCKED = 206
    APPLICATION_INTERNAL_ERROR = 207

    @property
    def text(self) -> str:
        """The table's wording, e.g. 'Required field missing'."""
        return self.name.replace("_", " ").capitalize()


@dataclass(frozen=True, slots=True)
class AckError:
    """What went wrong, for the ERR segment: table 0357 code, words, and where (e.g. PID-3)."""

    code: ErrorCode
    message: str
    location: str = ""


def new_control_id() -> str:
    """A fresh message control ID (MSH-10 holds at most 20 characters)."""
    return uuid.uuid4().hex[:20].upper()


class AckBuilder:
    """Builds the ACKs pacsflow sends as one application at one facility."""

    def __init__(
        self,
        app_name: str = "PACSFLOW",
        facility: str = "PACSFLOW",
        *,
        control_ids: Callable[[], str] = new_control_id,
        clock: Callable[[], datetime],
    ) -> None:
        self._app_name = app_name
        self._facility = facility
        self._control_ids = control_ids
        self._clock = clock

    def build(
        self,
        original: Header | None,
        code: AckCode,
        *,
        text: str = "",
        error: AckError | None = None,
    ) -> bytes:
        """The ACK answering `original` (None: a message whose MSH could not be read)."""
        header = original or Header()
        delimiters = header.delimiters
        version = header.version or DEFAULT_VERSION
        try:
            python_codec(header.charset)
            charset = header.charset
        except UnsupportedCharset:
            charset = ""  # we cannot write in it: answer in ASCII, which every peer reads
        message_type: FieldValue = (
            ("ACK", header.trigger_event, "ACK") if header.trigger_event else "ACK"
        )
        msh = encode_msh(
            [
                self._app_name,
                self._facility,
                header.sending_application,
                header.sending_facility,
                self._clock().strftime("%Y%m%d%H%M%S%z"),
                "",
                message_type,
                self._control_ids(),
                header.processing_id or "P",
                version,
                "",
                "",
                "",
                "",
                "",
                charset,
            ],
            delimiters,
        )
        segments = [
            msh,
            encode_segment(
                "MSA",
                [
                    code.in_mode(original),
                    header.control_id,
                    text or (error.message if error else ""),
                ],
                delimiters,
            ),
        ]
        if error is not None:
            segments.append(encode_segment("ERR", _err_fields(error, version), delimiters))
        return encode_message(segments, charset)

    def build_for_raw(
        self, raw: bytes, code: AckCode, *, text: str = "", error: AckError | None = None
    ) -> bytes:
        """The ACK for raw bytes that may not parse, from whatever of MSH can be read."""
        return self.build(read_header(raw), code, text=text, error=error)


def _err_fields(error: AckError, version: str) -> list[FieldValue]:
    where = _error_location(error.location)
    code: tuple[str, str, str] = (str(error.code.value), error.code.text, "HL70357")
    if _version(version) >= _ERR_V25:
        return ["", where, code, "E", "", "", "", error.message]
    # ERR-1 (ELD): segment ID ^ sequence ^ field position ^ code (CE as subcomponents); the
    # code stays the fourth component when the location names no field (a whole segment).
    head = where[:3]
    position: tuple[Component, ...] = (*head, *("",) * (3 - len(head)), code)
    return [position]


def _error_location(location: str) -> tuple[str, ...]:
    """ERL components (segment, sequence, field, repetition, component, subcomponent)."""
    try:
        where = Location.parse(location)
    except ValueError:
        name = location.strip()
        return (name, "1") if len(name) == 3 and name.isalnum() and name.isupper() else ()
    parts = [where.segment, "1", str(where.field)]
    if where.component:
        parts += ["1", str(where.component)]
        if where.subcomponent:
            parts.append(str(where.subcomponent))
    return tuple(parts)


def _version(text: str) -> tuple[int, ...]:
    numbers: list[int] = []
    for part in text.strip().split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers) if numbers else (0,)


__all__ = [
    "DEFAULT_VERSION",
    "AckBuilder",
    "AckCode",
    "AckError",
    "ErrorCode",
    "new_control_id",
]
