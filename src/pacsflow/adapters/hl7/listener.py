"""The HL7 service behind the MLLP listener: journal, translate, apply, answer.

Every message is journaled before anything else, so one that cannot be applied can be
replayed. AA (or CA in enhanced mode) is recorded in the same transaction that applies the
message; a retransmission of an answered one (same MSH-3, MSH-4, MSH-10 and the same content
but MSH-7, see retransmission.py) gets the earlier answer again and is not applied twice. A
different message reusing an answered control id is a new message: applied and answered on
its own, its journal entry records the entry whose id it reused. AE answers content that
will fail again as sent; AR answers a failure unrelated to the content (the store is
unavailable), so the sender resends. The one table below maps each error to its answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Protocol

from pacsflow.adapters.hl7.ack import AckBuilder, AckCode, AckError, ErrorCode, new_control_id
from pacsflow.adapters.hl7.codec import Header, Message, parse, read_header
from pacsflow.adapters.hl7.errors import (
    RequiredFieldMissing,
    SegmentSequenceError,
    UnknownTableValue,
    UnsupportedCharset,
    UnsupportedEvent,
)
from pacsflow.adapters.hl7.field_map import FieldMap, SenderFieldMaps
from pacsflow.adapters.hl7.retransmission import content_digest
from pacsflow.adapters.hl7.translate import translate
from pacsflow.domain.commands import Command
from pacsflow.domain.errors import (
    AccessDenied,
    ConflictingState,
    DuplicateAccession,
    IdentifierInUse,
    InvalidInput,
    MalformedMessage,
    MissingIdentifier,
    TransientError,
    UnknownOrder,
    UnsupportedMessage,
)
from pacsflow.domain.messages import InboundMessage, MessageStatus
from pacsflow.workflow.intake import Journaled

log = logging.getLogger(__name__)


class MessageIntake(Protocol):
    """What the HL7 service needs from the intake use case (workflow.intake.Intake)."""

    def journal(self, message: InboundMessage) -> Journaled:
        """Durably journal a message; `earlier` is set when it repeats an answered one."""
        ...

    def apply(self, entry_id: int, commands: Sequence[Command], ack: Callable[[], bytes]) -> None:
        """Apply the commands and record the positive answer atomically."""
        ...

    def settle(self, entry_id: int, status: MessageStatus, ack: bytes, error: str = "") -> None:
        """Record the answer of a message that was not applied."""
        ...


@dataclass(frozen=True, slots=True)
class _Reply:
    code: AckCode
    error: ErrorCode


# The one map from error to answer: first match wins, so subclasses come before their bases.
_REPLIES: tuple[tuple[type[Exception], _Reply], ...] = (
    (UnsupportedCharset, _Reply(AckCode.AE, ErrorCode.TABLE_VALUE_NOT_FOUND)),
    (UnsupportedEvent, _Reply(AckCode.AE, ErrorCode.UNSUPPORTED_EVENT_CODE)),
    (UnsupportedMessage, _Reply(AckCode.AE, ErrorCode.UNSUPPORTED_MESSAGE_TYPE)),
    (MissingIdentifier, _Reply(AckCode.AE, ErrorCode.REQUIRED_FIELD_MISSING)),
    (RequiredFieldMissing, _Reply(AckCode.AE, ErrorCode.REQUIRED_FIELD_MISSING)),
    (UnknownTableValue, _Reply(AckCode.AE, ErrorCode.TABLE_VALUE_NOT_FOUND)),
    (SegmentSequenceError, _Reply(AckCode.AE, ErrorCode.SEGMENT_SEQUENCE_ERROR)),
    (MalformedMessage, _Reply(AckCode.AE, ErrorCode.DATA_TYPE_ERROR)),
    (InvalidInput, _Reply(AckCode.AE, ErrorCode.DATA_TYPE_ERROR)),
    (UnknownOrder, _Reply(AckCode.AE, ErrorCode.UNKNOWN_KEY_IDENTIFIER)),
    (DuplicateAccession, _Reply(AckCode.AE, ErrorCode.DUPLICATE_KEY_IDENTIFIER)),
    (IdentifierInUse, _Reply(AckCode.AE, ErrorCode.DUPLICATE_KEY_IDENTIFIER)),
    (ConflictingState, _Reply(AckCode.AE, ErrorCode.APPLICATION_INTERNAL_ERROR)),
    (TransientError, _Reply(AckCode.AR, ErrorCode.APPLICATION_INTERNAL_ERROR)),
    (AccessDenied, _Reply(AckCode.AR, ErrorCode.APPLICATION_INTERNAL_ERROR)),
)
_UNEXPECTED = _Reply(AckCode.AR, ErrorCode.APPLICATION_INTERNAL_ERROR)
_UNEXPECTED_TEXT = "pacsflow could not store the message because of an internal error; resend it"


def _reply_for(exc: Exception) -> tuple[_Reply, AckError]:
    """The answer to an error, with the words and position the ERR segment carries."""
    reply = next((r for kind, r in _REPLIES if isinstance(exc, kind)), _UNEXPECTED)
    if isinstance(exc, InvalidInput):
        return reply, AckError(reply.error, str(exc), exc.location)
    if isinstance(exc, ConflictingState | AccessDenied):
        return reply, AckError(reply.error, str(exc))
    if isinstance(exc, TransientError):
        return reply, AckError(
            reply.error, f"pacsflow is temporarily unable to store the message ({exc}); resend it"
        )
    return reply, AckError(reply.error, _UNEXPECTED_TEXT)


class Hl7Service:
    """Answers each inbound HL7 v2 message; `handle` fits MllpServer and never raises."""

    def __init__(
        self,
        intake: MessageIntake,
        field_map: FieldMap | SenderFieldMaps | None = None,
        app_name: str = "PACSFLOW",
        facility: str = "PACSFLOW",
        *,
        assume_zone: tzinfo = UTC,
        control_ids: Callable[[], str] = new_control_id,
        clock: Callable[[], datetime],
        allowed_senders: frozenset[str] = frozenset(),
    ) -> None:
        self._intake = intake
        self._allowed = allowed_senders
        if isinstance(field_map, SenderFieldMaps):
            self._field_maps = field_map
        else:
            self._field_maps = SenderFieldMaps(field_map or FieldMap())
        self._zone = assume_zone
        self._acks = AckBuilder(app_name, facility, control_ids=control_ids, clock=clock)

    def handle(self, raw: bytes, peer: str) -> bytes:
        """Journal, apply and answer one message (the ACK bytes, without MLLP framing)."""
        try:
            return self._handle(raw, peer)
        except Exception as exc:  # last resort: the sender must always get an answer
            log.exception("HL7 message from %s could not be handled", peer)
            reply, error = _reply_for(exc)
            return self._acks.build_for_raw(raw, reply.code, error=error)

    def _handle(self, raw: bytes, peer: str) -> bytes:
        try:
            message = parse(raw)
        except InvalidInput as exc:
            return self._reject_unparsed(raw, peer, exc)
        header = message.msh
        journaled = self._intake.journal(_inbound(raw, peer, header))
        entry_id = journaled.entry_id
        if journaled.earlier is not None and journaled.earlier.ack:
            log.info(
                "HL7 %s control id %s from %s repeats journal entry %d; earlier answer resent",
                header.message_type,
                header.control_id,
                peer,
                journaled.earlier.id,
            )
            self._settle(
                entry_id,
                MessageStatus.DUPLICATE,
                journaled.earlier.ack,
                f"repeats journal entry {journaled.earlier.id}",
            )
            return journaled.earlier.ack
        if journaled.reused is not None:
            log.warning(
                "HL7 %s control id %s from %s^%s reuses the id of journal entry %d, which held "
                "another message; handled as a new message (journal entry %d)",
                header.message_type,
                header.control_id,
                header.sender_application,
                header.sender_facility,
                journaled.reused.id,
                entry_id,
            )
        try:
            self._check_sender(header)
            accepted = self._acks.build(header, AckCode.AA)
            self._intake.apply(entry_id, self._translate(message), ack=lambda: accepted)
        except (InvalidInput, ConflictingState, TransientError, AccessDenied) as exc:
            return self._answer_failure(entry_id, header, exc)
        except Exception as exc:  # a database or programming error: the sender may resend
            log.exception("HL7 message %s could not be applied", header.control_id)
            return self._answer_failure(entry_id, header, exc)
        return accepted

    def _check_sender(self, header: Header) -> None:
        """Refuse (AR) messages from sending applications this listener does not serve."""
        app = header.sender_application
        if self._allowed and not {app, f"{app}^{header.sender_facility}"} & self._allowed:
            raise AccessDenied(
                f"sending application {app}^{header.sender_facility} is not allowed to send "
                "to this pacsflow"
            )

    def _translate(self, message: Message) -> list[Command]:
        header = message.msh
        field_map = self._field_maps.for_sender(header.sender_application, header.sender_facility)
        return translate(message, field_map, assume_zone=self._zone)

    def _answer_failure(self, entry_id: int, header: Header, exc: Exception) -> bytes:
        reply, error = _reply_for(exc)
        if reply is not _UNEXPECTED:
            log.warning(
                "HL7 %s control id %s answered %s %d at %s",
                header.message_type,
                header.control_id,
                reply.code,
                error.code,
                error.location or "-",
            )
            log.debug("HL7 control id %s: %s", header.control_id, error.message)  # may hold PHI
        answer = self._acks.build(header, reply.code, error=error)
        is_final = reply.code is AckCode.AE or isinstance(exc, AccessDenied)
        status = MessageStatus.REJECTED if is_final else MessageStatus.FAILED
        self._settle(entry_id, status, answer, f"{type(exc).__name__}: {exc}")
        return answer

    def _reject_unparsed(self, raw: bytes, peer: str, exc: InvalidInput) -> bytes:
        header = read_header(raw)
        reply, error = _reply_for(exc)
        log.warning("HL7 message from %s cannot be parsed (%s)", peer, error.location or "-")
        log.debug("HL7 message from %s: %s", peer, error.message)  # may hold PHI
        answer = self._acks.build(header, reply.code, error=error)
        try:
            entry_id = self._intake.journal(_inbound(raw, peer, header)).entry_id
        except Exception as journal_exc:
            log.exception("unparsable HL7 message from %s could not be journaled", peer)
            reply, error = _reply_for(journal_exc)
            return self._acks.build(header, reply.code, error=error)
        self._settle(entry_id, MessageStatus.REJECTED, answer, f"{type(exc).__name__}: {exc}")
        return answer

    def _settle(self, entry_id: int, status: MessageStatus, ack: bytes, error: str) -> None:
        """Record the answer; if even that fails the sender is still answered."""
        try:
            self._intake.settle(entry_id, status, ack, error)
        except Exception:
            log.exception("journal entry %d could not be settled as %s", entry_id, status)


def _inbound(raw: bytes, peer: str, header: Header | None) -> InboundMessage:
    if header is None:
        return InboundMessage(raw=raw, peer=peer)
    return InboundMessage(
        raw=raw,
        peer=peer,
        sending_application=header.sender_application,
        sending_facility=header.sender_facility,
        control_id=header.control_id,
        message_type=header.message_type,
        digest=content_digest(raw),
    )


__all__ = ["Hl7Service", "MessageIntake"]
