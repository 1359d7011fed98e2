"""Receiving an interface message: journal, recognise a retransmission, apply, settle.

The one policy behind every inbound message (DESIGN, delivery guarantees): the raw message
is journaled before anything else; a retransmission of an answered message (same sender,
control id and digest) gets the stored answer again and is not applied twice; a message
reusing an answered control id with other content is applied as new. The positive answer is
recorded in the same transaction that applies the message, so a retransmission can never
find an applied message without its answer. The answer itself is opaque bytes made by the
adapter (`Answer`): the workflow stores and returns it without knowing the wire format.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pacsflow.domain.commands import Command
from pacsflow.domain.errors import AccessDenied, ConflictingState, InvalidInput, TransientError
from pacsflow.domain.messages import InboundMessage, JournalEntry, MessageStatus
from pacsflow.workflow.ports.clock import Clock
from pacsflow.workflow.ports.uow import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A message as received and translated: its commands, or why it has none."""

    message: InboundMessage
    commands: Sequence[Command] = ()
    #: Why the message cannot be applied as sent (unparsable, untranslatable, refused).
    error: Exception | None = None


@dataclass(frozen=True, slots=True)
class MessageOutcome:
    """What became of a received message; the adapter answers from it."""

    status: MessageStatus
    entry_id: int
    #: Why it was not applied (REJECTED: will fail again as sent; FAILED: may be resent).
    error: Exception | None = None
    #: DUPLICATE: the answered entry this message retransmits.
    earlier: JournalEntry | None = None
    #: The answered entry of other content whose control id this message reuses.
    reused: JournalEntry | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """An outcome with the answer recorded for it (for a retransmission: the earlier one)."""

    outcome: MessageOutcome
    answer: bytes


#: Makes the answer to an outcome (the adapter's wire format; stored as given).
Answer = Callable[[MessageOutcome], bytes]
#: Applies a message's commands inside the unit of work of its positive answer.
Apply = Callable[[UnitOfWork, InboundMessage, Sequence[Command]], None]


def is_final(error: Exception) -> bool:
    """True when the message will fail again as sent (rejected), False when a resend may
    succeed (failed: the store was unavailable or something unexpected broke)."""
    return isinstance(error, InvalidInput | ConflictingState | AccessDenied)


class MessageReception:
    """Journals, de-duplicates, applies and settles inbound interface messages."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, apply: Apply) -> None:
        self._uow = uow
        self._clock = clock
        self._apply = apply

    def receive(self, received: ReceivedMessage, answer: Answer) -> Receipt:
        """Take one message through the policy and return its outcome with its answer."""
        message = received.message
        entry_id, earlier, reused = self._journal(message)
        if earlier is not None and earlier.ack:
            outcome = MessageOutcome(MessageStatus.DUPLICATE, entry_id, earlier=earlier)
            self._settle(outcome, earlier.ack, f"repeats journal entry {earlier.id}")
            return Receipt(outcome, earlier.ack)
        if received.error is None:
            try:
                return self._apply_and_answer(entry_id, received, reused, answer)
            except (InvalidInput, ConflictingState, AccessDenied, TransientError) as exc:
                return self._refuse(entry_id, exc, reused, answer)
            except Exception as exc:  # a database or programming error: the sender may resend
                log.exception("message of journal entry %d could not be applied", entry_id)
                return self._refuse(entry_id, exc, reused, answer)
        return self._refuse(entry_id, received.error, reused, answer)

    def _journal(
        self, message: InboundMessage
    ) -> tuple[int, JournalEntry | None, JournalEntry | None]:
        with self._uow() as uow:
            earlier = reused = None
            if message.control_id:
                earlier = uow.journal.find_answered(message)
                reused = None if earlier is not None else uow.journal.find_reused(message)
            entry_id = uow.journal.add(
                message, self._clock.now(), reuses=reused.id if reused else None
            )
            uow.commit()
        return entry_id, earlier, reused

    def _apply_and_answer(
        self,
        entry_id: int,
        received: ReceivedMessage,
        reused: JournalEntry | None,
        answer: Answer,
    ) -> Receipt:
        outcome = MessageOutcome(MessageStatus.APPLIED, entry_id, reused=reused)
        reply = answer(outcome)
        with self._uow() as uow:
            # Recorded first in the transaction, committed only with the applied commands:
            # the apply ends with the audit records, which hold the chain head until commit.
            uow.journal.settle(entry_id, MessageStatus.APPLIED, reply, at=self._clock.now())
            self._apply(uow, received.message, received.commands)
            uow.commit()
        return Receipt(outcome, reply)

    def _refuse(
        self, entry_id: int, error: Exception, reused: JournalEntry | None, answer: Answer
    ) -> Receipt:
        status = MessageStatus.REJECTED if is_final(error) else MessageStatus.FAILED
        outcome = MessageOutcome(status, entry_id, error=error, reused=reused)
        reply = answer(outcome)
        self._settle(outcome, reply, f"{type(error).__name__}: {error}")
        return Receipt(outcome, reply)

    def _settle(self, outcome: MessageOutcome, reply: bytes, error: str) -> None:
        """Record the answer; if even that fails the sender is still answered."""
        try:
            with self._uow() as uow:
                uow.journal.settle(
                    outcome.entry_id, outcome.status, reply, error, at=self._clock.now()
                )
                uow.commit()
        except Exception:
            log.exception(
                "journal entry %d could not be settled as %s", outcome.entry_id, outcome.status
            )


__all__ = [
    "Answer",
    "Apply",
    "MessageOutcome",
    "MessageReception",
    "Receipt",
    "ReceivedMessage",
    "is_final",
]
