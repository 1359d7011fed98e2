"""The journal of inbound interface messages."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pacsflow.domain.messages import InboundMessage, JournalEntry, MessageStatus


class MessageJournal(Protocol):
    """Durable record of every inbound interface message."""

    def add(
        self, message: InboundMessage, received_at: datetime, *, reuses: int | None = None
    ) -> int:
        """Journal a message as received (`reuses`: the entry whose control id it reuses)."""
        ...

    def find_answered(self, message: InboundMessage) -> JournalEntry | None:
        """The applied or rejected entry this message repeats, if any.

        Same sender, control id and digest; an entry journaled without a digest matches on
        sender and control id alone.
        """
        ...

    def find_reused(self, message: InboundMessage) -> JournalEntry | None:
        """The latest applied or rejected entry with this sender and control id, any content."""
        ...

    def settle(
        self, entry_id: int, status: MessageStatus, ack: bytes, error: str = "", *, at: datetime
    ) -> None:
        """Record how a journaled message was answered, and when."""
        ...

    def get(self, entry_id: int) -> JournalEntry | None:
        """One journal entry."""
        ...


__all__ = [
    "MessageJournal",
]
