"""Order and identity intake: journal every interface message, then apply its commands."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pacsflow.domain import commands as cmd
from pacsflow.domain.audit import ActiveParticipant, AuditSource
from pacsflow.domain.events import StudyPublished
from pacsflow.domain.exception_queue import ExceptionRecord
from pacsflow.domain.matching import ExceptionReason, Matched, MatchOutcomeKind
from pacsflow.domain.messages import InboundMessage
from pacsflow.domain.orders import StationRule
from pacsflow.domain.studies import StudyState
from pacsflow.workflow.events import EventBus
from pacsflow.workflow.ingest import decide
from pacsflow.workflow.intake_commands import HANDLERS, Applying, ReportSink
from pacsflow.workflow.messages import Answer, MessageReception, Receipt, ReceivedMessage
from pacsflow.workflow.ports.clock import Clock
from pacsflow.workflow.ports.uow import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger(__name__)


class Intake:
    """Applies identity and order commands that arrive over the interfaces."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        station_rules: Sequence[StationRule] = (),
        audit_source: AuditSource | None = None,
        report_sink: ReportSink | None = None,
        events: EventBus | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._report_sink = report_sink
        self._events = events or EventBus()
        self._station_rules = tuple(station_rules)
        self._source = audit_source or AuditSource("pacsflow")
        self._reception = MessageReception(uow, clock, self._apply)

    def receive(self, received: ReceivedMessage, answer: Answer) -> Receipt:
        """Journal a message, answer a retransmission again, else apply it and settle it."""
        return self._reception.receive(received, answer)

    def _apply(
        self, uow: UnitOfWork, message: InboundMessage, commands: Sequence[cmd.Command]
    ) -> None:
        """Apply the commands of a journaled message in the unit of work of its answer."""
        sender = ActiveParticipant(
            user_id=message.sending_application,
            alternative_user_id=message.sending_facility,
            is_requestor=True,
            network_access_point=message.peer.rsplit(":", 1)[0],
        )
        events = []
        for command in commands:
            handler = HANDLERS[type(command)]
            applying = Applying(
                uow,
                self._clock.now(),
                sender,
                self._source,
                self._station_rules,
                self._events,
                self._report_sink,
            )
            handler.apply(applying, command)
            if handler.explains is not None:
                self._match_late(uow, handler.explains(uow, command))
            events.append(handler.audit(applying, command))
        now = self._clock.now()
        for event in events:  # last before commit: the audit chain head stays locked briefly
            uow.audit.append(event, now)

    def _match_late(self, uow: UnitOfWork, explained: Sequence[ExceptionRecord]) -> None:
        """Publish held studies that an order or registration now explains (late match)."""
        now = self._clock.now()
        for held in explained:
            if held.reason is ExceptionReason.STUDY_INCONSISTENT:
                continue  # needs a person: its instances disagree among themselves
            outcome = decide(uow, held.received)
            if not isinstance(outcome, Matched):
                continue
            uid = held.study_instance_uid
            uow.exceptions.resolve(held.id, now, "late_match")
            if uow.exceptions.open_for(uid) is not None:
                continue  # another problem of the same study still needs a person
            uow.studies.set_match(
                uid, StudyState.PUBLISHED, outcome.patient.primary, outcome.order.accession_number
            )
            uow.events.record_match(uid, MatchOutcomeKind.LATE_MATCHED, now)
            self._events.publish(uow, [StudyPublished(uid, now)])
            log.debug("late match: study %s to order %s", uid, outcome.order.accession_number)


__all__ = ["Intake", "ReportSink"]
