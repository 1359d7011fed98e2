"""Inbound interface messages and their journal entries."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class MessageStatus(enum.StrEnum):
    """Where an inbound interface message stands in the journal."""

    RECEIVED = "received"
    APPLIED = "applied"
    REJECTED = "rejected"
    FAILED = "failed"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """An interface message as received, before it is applied."""

    raw: bytes
    peer: str
    sending_application: str = ""
    sending_facility: str = ""
    control_id: str = ""
    message_type: str = ""
    #: What a retransmission of this message keeps (set by the adapter); "" when unknown.
    digest: str = ""


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A journaled inbound message and, once answered, the answer it got."""

    id: int
    received_at: datetime
    message: InboundMessage
    status: MessageStatus
    ack: bytes = b""
    error: str = ""
    #: The earlier entry whose control id this different message reused, if any.
    reuses: int | None = None


__all__ = [
    "InboundMessage",
    "JournalEntry",
    "MessageStatus",
]
