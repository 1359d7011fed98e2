"""HL7-specific refinements of the domain's InvalidInput errors, so the ACK can name them.

Each is a subclass of a domain error: code that does not know HL7 still sees a
MalformedMessage, UnsupportedMessage or InvalidInput. The ACK/ERR table in listener.py
maps each to an HL7 table 0357 code.
"""

from __future__ import annotations

from pacsflow.domain.errors import InvalidInput, MalformedMessage, UnsupportedMessage


class SegmentSequenceError(MalformedMessage):
    """A segment is missing or out of place (no MSH first, an order without ORC/OBR)."""


class FrameTooLarge(MalformedMessage):
    """An MLLP frame grew past the configured maximum message size."""


class UnsupportedCharset(UnsupportedMessage):
    """MSH-18 names a character set pacsflow does not decode."""


class UnsupportedEvent(UnsupportedMessage):
    """A known message type with a trigger event pacsflow does not handle."""


class RequiredFieldMissing(InvalidInput):
    """A required field other than an identifier is empty (e.g. ORC-1 order control)."""


class UnknownTableValue(InvalidInput):
    """A coded field holds a value outside the table pacsflow understands."""


__all__ = [
    "FrameTooLarge",
    "RequiredFieldMissing",
    "SegmentSequenceError",
    "UnknownTableValue",
    "UnsupportedCharset",
    "UnsupportedEvent",
]
