"""What a retransmission keeps: the digest that tells it from another message reusing its id.

A sender that gets no acknowledgment sends the same message again with the same MSH-10
(HL7 v2.5 ch. 2.9.2, original mode). Interface engines rebuild it on the way: MSH-7 (date/time
of message) is stamped anew and segment terminators may change (CR, CRLF, LF, a trailing one).
Everything else is the same message. So the digest is SHA-256 over the segments as received,
split on CR/LF with empty lines dropped, MSH-7 emptied. A message with the same sender and
control id but another digest is another message (a counter reset after a restart, test data).
"""

from __future__ import annotations

import hashlib
import re

_SEGMENT_BREAK = re.compile(rb"[\r\n]+")
_MSH7 = 6  # MSH-1 is the separator itself: fields split on it put MSH-7 at index 6


def content_digest(raw: bytes) -> str:
    """The hex SHA-256 of a message as a retransmission of it would carry it."""
    segments = [s for s in _SEGMENT_BREAK.split(raw) if s]
    if segments and segments[0].startswith(b"MSH") and len(segments[0]) > 3:
        separator = segments[0][3:4]
        fields = segments[0].split(separator)
        if len(fields) > _MSH7:
            fields[_MSH7] = b""
        segments[0] = separator.join(fields)
    return hashlib.sha256(b"\r".join(segments)).hexdigest()


__all__ = ["content_digest"]
