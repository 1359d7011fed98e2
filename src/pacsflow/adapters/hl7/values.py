"""HL7 v2 field values the message families share: timestamps, the explicit null."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo

from pacsflow.domain.errors import MalformedMessage, quote

_TS = re.compile(
    r"^(\d{4})(\d{2})(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,4}))?)?)?)?"
    r"(?:([+-])(\d{2})(\d{2}))?$"
)
_HL7_NULL = '""'


def parse_timestamp(text: str, location: str, zone: tzinfo = UTC) -> datetime | None:
    """An HL7 TS/DTM (YYYYMMDD[HH[MM[SS[.S...]]]][+/-ZZZZ]) as an aware datetime.

    Without an offset the time is read in `zone`. Empty -> None; a value that is not a
    timestamp -> MalformedMessage at `location`.
    """
    text = field_text(text)
    if not text:
        return None
    match = _TS.match(text)
    if match is None:
        raise MalformedMessage(
            f"{location} {quote(text)} is not an HL7 timestamp (YYYYMMDDHHMM[SS][+ZZZZ])",
            location=location,
        )
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    tz = zone
    if sign:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        tz = timezone(-offset if sign == "-" else offset)
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")),
            tzinfo=tz,
        )
    except ValueError as exc:
        raise MalformedMessage(
            f"{location} {quote(text)} is not a valid date and time", location=location
        ) from exc


def field_text(value: str) -> str:
    """A field's text with HL7's explicit null ("") read as empty."""
    value = value.strip()
    return "" if value == _HL7_NULL else value


__all__ = ["field_text", "parse_timestamp"]
