"""The inbound HL7 message journal in SQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from pacsflow.adapters.db import tables as t
from pacsflow.adapters.db.timestamps import aware, utc
from pacsflow.domain.messages import InboundMessage, JournalEntry, MessageStatus


class SqlMessageJournal:
    """The inbound HL7 message journal in SQL."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def add(
        self, message: InboundMessage, received_at: datetime, *, reuses: int | None = None
    ) -> int:
        """Journal a message as received (`reuses`: the entry whose control id it reuses)."""
        return int(
            self._c.execute(
                sa.insert(t.hl7_messages)
                .values(
                    received_at=received_at,
                    peer=message.peer[:128],
                    sending_application=message.sending_application[:180],
                    sending_facility=message.sending_facility[:180],
                    control_id=message.control_id[:199],
                    message_type=message.message_type[:32],
                    raw=message.raw,
                    status=MessageStatus.RECEIVED.value,
                    digest=message.digest[:64],
                    reuses_pk=reuses,
                )
                .returning(t.hl7_messages.c.pk)
            ).scalar_one()
        )

    def find_answered(self, message: InboundMessage) -> JournalEntry | None:
        """The applied or rejected entry this message repeats (same content), if any."""
        m = t.hl7_messages.c
        row = self._c.execute(
            self._answered(message)
            .where(m.digest.in_([message.digest[:64], ""]))
            .order_by(m.pk)
            .limit(1)
        ).first()
        return None if row is None else _entry(row)

    def find_reused(self, message: InboundMessage) -> JournalEntry | None:
        """The latest applied or rejected entry with this sender and control id."""
        m = t.hl7_messages.c
        row = self._c.execute(self._answered(message).order_by(m.pk.desc()).limit(1)).first()
        return None if row is None else _entry(row)

    @staticmethod
    def _answered(message: InboundMessage) -> sa.Select[Any]:
        m = t.hl7_messages.c
        return sa.select(t.hl7_messages).where(
            m.sending_application == message.sending_application[:180],
            m.sending_facility == message.sending_facility[:180],
            m.control_id == message.control_id[:199],
            m.status.in_([MessageStatus.APPLIED.value, MessageStatus.REJECTED.value]),
        )

    def settle(
        self, entry_id: int, status: MessageStatus, ack: bytes, error: str = "", *, at: datetime
    ) -> None:
        """Record how a journaled message was answered, and when."""
        self._c.execute(
            sa.update(t.hl7_messages)
            .where(t.hl7_messages.c.pk == entry_id)
            .values(status=status.value, ack=ack, error=error, settled_at=utc(at))
        )

    def get(self, entry_id: int) -> JournalEntry | None:
        """One journal entry."""
        row = self._c.execute(
            sa.select(t.hl7_messages).where(t.hl7_messages.c.pk == entry_id)
        ).first()
        return None if row is None else _entry(row)


def _entry(row: sa.Row[Any]) -> JournalEntry:
    m = row._mapping
    return JournalEntry(
        id=int(m["pk"]),
        received_at=aware(m["received_at"]),
        message=InboundMessage(
            raw=bytes(m["raw"]),
            peer=m["peer"],
            sending_application=m["sending_application"],
            sending_facility=m["sending_facility"],
            control_id=m["control_id"],
            message_type=m["message_type"],
            digest=m["digest"],
        ),
        status=MessageStatus(m["status"]),
        ack=bytes(m["ack"] or b""),
        error=m["error"],
        reuses=m["reuses_pk"],
    )


__all__ = ["SqlMessageJournal"]
