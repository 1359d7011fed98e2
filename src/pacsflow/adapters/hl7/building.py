"""HL7 v2 ER7 building: fields, segments and messages from values, every text escaped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pacsflow.adapters.hl7.charsets import python_codec
from pacsflow.adapters.hl7.er7 import DEFAULT_DELIMITERS, SEGMENT_NAME, Delimiters, escape

Component = str | tuple[str, ...]
"""One component: a text, or a tuple of subcomponent texts."""
Value = str | tuple[Component, ...]
"""One field repetition: a text, or a tuple of components."""


@dataclass(frozen=True, slots=True)
class Repeated:
    """A repeating field value for the builder."""

    values: tuple[Value, ...]


FieldValue = Value | Repeated
"""Anything the builder accepts as a field."""


def encode_field(value: FieldValue, delimiters: Delimiters = DEFAULT_DELIMITERS) -> str:
    """One field in ER7, every text escaped and trailing empty parts dropped."""
    if isinstance(value, Repeated):
        return delimiters.repetition.join(_encode_value(v, delimiters) for v in value.values)
    return _encode_value(value, delimiters)


def _encode_value(value: Value, d: Delimiters) -> str:
    if isinstance(value, str):
        return escape(value, d)
    parts = [
        escape(c, d)
        if isinstance(c, str)
        else _trim(d.subcomponent.join(escape(s, d) for s in c), d.subcomponent)
        for c in value
    ]
    return _trim(d.component.join(parts), d.component)


def _trim(text: str, separator: str) -> str:
    while text.endswith(separator):
        text = text[: -len(separator)]
    return text


def encode_segment(
    name: str, fields: Sequence[FieldValue], delimiters: Delimiters = DEFAULT_DELIMITERS
) -> str:
    """One segment (not MSH) from its fields 1..n, trailing empty fields dropped."""
    if not SEGMENT_NAME.match(name) or name == "MSH":
        raise ValueError(f"{name!r} is not a segment name the builder writes")
    text = delimiters.field.join([name, *(encode_field(f, delimiters) for f in fields)])
    return _trim(text, delimiters.field)


def encode_msh(fields: Sequence[FieldValue], delimiters: Delimiters = DEFAULT_DELIMITERS) -> str:
    """An MSH segment from its fields 3..n (MSH-1 and MSH-2 come from the delimiters)."""
    body = delimiters.field.join(encode_field(f, delimiters) for f in fields)
    text = f"MSH{delimiters.field}{delimiters.encoding_characters}{delimiters.field}{body}"
    return _trim(text, delimiters.field)


def encode_message(segments: Sequence[str], charset: str = "") -> bytes:
    """Join segments with CR and encode in the MSH-18 character set (unencodable text -> ?)."""
    return ("\r".join(segments) + "\r").encode(python_codec(charset), errors="replace")


__all__ = [
    "Component",
    "FieldValue",
    "Repeated",
    "Value",
    "encode_field",
    "encode_message",
    "encode_msh",
    "encode_segment",
]
