"""Order and identity intake: journal every interface message, then apply its commands."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from pacsflow.domain import commands as cmd
from pacsflow.domain.audit import (
    Action,
    ActiveParticipant,
    AuditEvent,
    AuditSource,
    order_record,
    patient_record,
)
from pacsflow.domain.errors import DuplicateAccession, UnknownOrder, UnsupportedMessage
from pacsflow.domain.matching import ExceptionReason, Matched
from pacsflow.domain.orders import (
    AccessionNumber,
    Order,
    OrderStatus,
    StationRule,
    assign_station,
)
from pacsflow.domain.patients import Issuer, Patient, PatientId, PatientIdentifier
from pacsflow.domain.reports import Report
from pacsflow.domain.uids import Uid
from pacsflow.workflow.ingest import decide
from pacsflow.workflow.ports import (
    Clock,
    InboundMessage,
    JournalEntry,
    MatchOutcomeKind,
    MessageStatus,
    StudyState,
    UnitOfWork,
    UnitOfWorkFactory,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Journaled:
    """A message now durably journaled; `earlier` is set when it repeats an answered one."""

    entry_id: int
    earlier: JournalEntry | None


#: Keeps a report version inside the intake transaction (Results.record).
ReportSink = Callable[[UnitOfWork, Report, str, datetime], int]

#: Called inside the transaction that records a new order (enqueue what it causes).
AfterOrder = Callable[[UnitOfWork, Order, datetime], None]


class Intake:
    """Applies identity and order commands that arrive over the interfaces."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        station_rules: Sequence[StationRule] = (),
        audit_source: AuditSource | None = None,
        after_order: Sequence[AfterOrder] = (),
        report_sink: ReportSink | None = None,
        on_published: Sequence[Callable[[UnitOfWork, Uid, datetime], None]] = (),
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._after_order = tuple(after_order)
        self._report_sink = report_sink
        self._on_published = tuple(on_published)
        self._station_rules = tuple(station_rules)
        self._source = audit_source or AuditSource("pacsflow")

    def journal(self, message: InboundMessage) -> Journaled:
        """Durably journal a message before anything else happens to it."""
        with self._uow() as uow:
            earlier = uow.journal.find_answered(message) if message.control_id else None
            entry_id = uow.journal.add(message, self._clock.now())
            uow.commit()
        return Journaled(entry_id, earlier)

    def apply(
        self, entry_id: int, commands: Sequence[cmd.Command], ack: Callable[[], bytes]
    ) -> None:
        """Apply the commands of a journaled message and record its positive answer atomically."""
        with self._uow() as uow:
            entry = uow.journal.get(entry_id)
            sender = ActiveParticipant(
                user_id=entry.message.sending_application if entry else "",
                alternative_user_id=entry.message.sending_facility if entry else "",
                is_requestor=True,
                network_access_point=entry.message.peer.rsplit(":", 1)[0] if entry else "",
            )
            events = []
            for command in commands:
                self._handle(uow, command, sender.user_id or "hl7")
                self._match_late(uow, command)
                events.append(self._audit_event(uow, sender, command))
            uow.journal.settle(entry_id, MessageStatus.APPLIED, ack())
            now = self._clock.now()
            for event in events:  # last before commit: the audit chain head stays locked briefly
                uow.audit.append(event, now)
            uow.commit()

    def settle(self, entry_id: int, status: MessageStatus, ack: bytes, error: str = "") -> None:
        """Record the answer of a message that was not applied (rejected, failed, duplicate)."""
        with self._uow() as uow:
            uow.journal.settle(entry_id, status, ack, error)
            uow.commit()

    def _handle(self, uow: UnitOfWork, command: cmd.Command, source: str = "hl7") -> None:
        now = self._clock.now()
        match command:
            case cmd.RegisterPatient(patient) | cmd.UpdatePatient(patient):
                _save_patient(uow, patient, now)
            case cmd.MergePatients(survivor, merged):
                _save_patient(uow, survivor, now)
                for identifier in merged:
                    if identifier in survivor.identifiers:
                        continue  # a patient is never merged into itself
                    uow.patients.merge(identifier, survivor.primary, now)
            case cmd.PlaceOrder(order, patient):
                _save_patient(uow, patient, now)
                existing = uow.orders.by_accession(order.accession_number)
                if existing is not None and existing.patient != order.patient:
                    raise DuplicateAccession(
                        f"accession number {order.accession_number} already belongs to "
                        "another patient's order"
                    )
                if existing is not None:
                    # A repeated NW for the same order: keep the UID the modality may have.
                    order = replace(order, study_instance_uid=existing.study_instance_uid)
                scheduled = self._scheduled(order)
                uow.orders.save(scheduled, now)
                uow.events.record_order_event(order.accession_number, "placed", now)
                if existing is None:
                    for hook in self._after_order:  # work a new order causes, same transaction
                        hook(uow, scheduled, now)
            case cmd.ReceiveReport(report):
                if self._report_sink is None:
                    raise UnsupportedMessage("this node does not take reports")
                self._report_sink(uow, report, f"hl7:{source}", now)
            case cmd.ChangeOrder(order, patient):
                existing = _existing(uow, order.accession_number)
                _save_patient(uow, patient, now)
                changed = replace(
                    self._scheduled(order),
                    study_instance_uid=existing.study_instance_uid,
                    status=existing.status,
                )
                uow.orders.save(changed, now)
                uow.events.record_order_event(order.accession_number, "changed", now)
            case cmd.CancelOrder(accession, is_discontinued):
                existing = _existing(uow, accession)
                status = OrderStatus.DISCONTINUED if is_discontinued else OrderStatus.CANCELLED
                uow.orders.save(existing.with_status(status), now)
                uow.events.record_order_event(accession, status.value, now)
            case cmd.ChangeOrderStatus(accession, status):
                existing = _existing(uow, accession)
                uow.orders.save(existing.with_status(status), now)
                uow.events.record_order_event(accession, status.value, now)

    def _audit_event(
        self, uow: UnitOfWork, sender: ActiveParticipant, command: cmd.Command
    ) -> AuditEvent:
        """The identity or order change a command makes, as an audit event (ATNA)."""
        now = self._clock.now()
        match command:
            case cmd.RegisterPatient(patient):
                return patient_record(
                    self._source, sender, now, action=Action.CREATE, patients=patient.identifiers
                )
            case cmd.UpdatePatient(patient):
                return patient_record(
                    self._source, sender, now, action=Action.UPDATE, patients=patient.identifiers
                )
            case cmd.MergePatients(survivor, merged):
                return patient_record(
                    self._source,
                    sender,
                    now,
                    action=Action.UPDATE,
                    patients=(*survivor.identifiers, *merged),
                    description="merge",
                )
            case cmd.PlaceOrder(order, _) | cmd.ChangeOrder(order, _):
                return order_record(
                    self._source,
                    sender,
                    now,
                    action=Action.CREATE if isinstance(command, cmd.PlaceOrder) else Action.UPDATE,
                    patient=order.patient,
                    accession_number=order.accession_number,
                    study_uid=order.study_instance_uid,
                )
            case cmd.ReceiveReport(report):
                return order_record(
                    self._source,
                    sender,
                    now,
                    action=Action.CREATE,
                    patient=report.patient or PatientIdentifier(PatientId(""), Issuer("")),
                    accession_number=report.accession_number,
                    study_uid=report.study_instance_uid,
                )
            case cmd.CancelOrder(accession, _) | cmd.ChangeOrderStatus(accession, _):
                changed = _existing(uow, accession)
                return order_record(
                    self._source,
                    sender,
                    now,
                    action=Action.DELETE if isinstance(command, cmd.CancelOrder) else Action.UPDATE,
                    patient=changed.patient,
                    accession_number=accession,
                    study_uid=changed.study_instance_uid,
                )

    def _match_late(self, uow: UnitOfWork, command: cmd.Command) -> None:
        """Publish held studies that this order or registration now explains (late match)."""
        match command:
            case cmd.PlaceOrder(order, _) | cmd.ChangeOrder(order, _):
                explained = uow.exceptions.open_explained_by(
                    accession=order.accession_number, study_uid=order.study_instance_uid
                )
            case cmd.RegisterPatient(patient) | cmd.UpdatePatient(patient):
                explained = uow.exceptions.open_explained_by(
                    patient_ids=[i.value for i in patient.identifiers]
                )
            case cmd.MergePatients(survivor, merged):
                explained = uow.exceptions.open_explained_by(
                    patient_ids=[i.value for i in (*survivor.identifiers, *merged)]
                )
            case _:
                return
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
            for hook in self._on_published:
                hook(uow, uid, now)
            log.debug("late match: study %s to order %s", uid, outcome.order.accession_number)

    def _scheduled(self, order: Order) -> Order:
        return assign_station(order, self._station_rules)


def _existing(uow: UnitOfWork, accession: AccessionNumber) -> Order:
    order = uow.orders.by_accession(accession)
    if order is None:
        raise UnknownOrder(f"no order has accession number {accession!r}")
    return order


def _save_patient(uow: UnitOfWork, patient: Patient, at: datetime) -> None:
    uow.patients.save(patient, at)


__all__ = ["Intake", "Journaled"]
