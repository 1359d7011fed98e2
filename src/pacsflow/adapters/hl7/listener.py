"""The HL7 service behind the MLLP listener: parse, translate, answer.

The journal/retransmission/apply/settle policy is the workflow's (workflow/messages.py):
this service hands it the message with its commands or the reason it has none, and an
`answer` that turns the outcome into ACK bytes. The workflow stores those bytes with the
outcome (AA in the same transaction that applies the message), so a retransmission (same
MSH-3, MSH-4, MSH-10 and the same content but MSH-7, see retransmission.py) gets the earlier
answer again byte for byte. AE answers content that will fail again as sent; AR answers a
failure unrelated to the content (the store is unavailable), so the sender resends. The
one table below maps each error to its answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
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
from pacsflow.domain.messages import InboundMessage
from pacsflow.workflow.messages import Answer, MessageOutcome, Receipt, ReceivedMessage

log = logging.getLogger(__name__)


class MessageReceiver(Protocol):
    """What the HL7 service needs from the workflow (workflow.intake.Intake.receive)."""

    def receive(self, received: ReceivedMessage, answer: Answer) -> Receipt:
        """Journal, de-duplicate, apply and settle one message; its outcome and answer."""
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
        intake: MessageReceiver,
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
            return self._answer_unparsed(raw, peer, exc)
        header = message.msh
        received = ReceivedMessage(_inbound(raw, peer, header))
        try:
            self._check_sender(header)
            received = replace(received, commands=self._translate(message))
        except (InvalidInput, ConflictingState, TransientError, AccessDenied) as exc:
            received = replace(received, error=exc)
        except Exception as exc:  # a programming error: answered AR, the sender may resend
            log.exception("HL7 message %s could not be translated", header.control_id)
            received = replace(received, error=exc)
        receipt = self._intake.receive(received, lambda outcome: self._answer(header, outcome))
        self._log(header, peer, receipt.outcome)
        return receipt.answer

    def _answer(self, header: Header, outcome: MessageOutcome) -> bytes:
        """The ACK of an outcome: AA (CA), or AE/AR with the ERR its error calls for."""
        if outcome.error is None:
            return self._acks.build(header, AckCode.AA)
        reply, error = _reply_for(outcome.error)
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
        return self._acks.build(header, reply.code, error=error)

    def _log(self, header: Header, peer: str, outcome: MessageOutcome) -> None:
        if outcome.earlier is not None:
            log.info(
                "HL7 %s control id %s from %s repeats journal entry %d; earlier answer resent",
                header.message_type,
                header.control_id,
                peer,
                outcome.earlier.id,
            )
        elif outcome.reused is not None:
            log.warning(
                "HL7 %s control id %s from %s^%s reuses the id of journal entry %d, which held "
                "another message; handled as a new message (journal entry %d)",
                header.message_type,
                header.control_id,
                header.sender_application,
                header.sender_facility,
                outcome.reused.id,
                outcome.entry_id,
            )

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

    def _answer_unparsed(self, raw: bytes, peer: str, exc: InvalidInput) -> bytes:
        header = read_header(raw)
        log.warning("HL7 message from %s cannot be parsed (%s)", peer, exc.location or "-")
        log.debug("HL7 message from %s: %s", peer, exc)  # may hold PHI
        reply, error = _reply_for(exc)
        received = ReceivedMessage(_inbound(raw, peer, header), error=exc)
        receipt = self._intake.receive(
            received, lambda _: self._acks.build(header, reply.code, error=error)
        )
        return receipt.answer


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


__all__ = ["Hl7Service", "MessageReceiver"]
