"""Order and identity intake: journal every interface message, then apply its commands."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from pacsflow.domain import commands as cmd
from pacsflow.domain.audit import Action, ActiveParticipant, AuditEvent, AuditSource
from pacsflow.domain.audit_events import order_record, patient_record
from pacsflow.domain.errors import (
    DuplicateAccession,
    IdentifierInUse,
    UnknownOrder,
    UnsupportedMessage,
    quote,
)
from pacsflow.domain.events import OrderPlaced, StudyPublished
from pacsflow.domain.matching import ExceptionReason, Matched, MatchOutcomeKind
from pacsflow.domain.messages import InboundMessage
from pacsflow.domain.orders import (
    AccessionNumber,
    Order,
    OrderStatus,
    StationRule,
    assign_station,
)
from pacsflow.domain.patients import Issuer, Patient, PatientId, PatientIdentifier
from pacsflow.domain.reports import Report
from pacsflow.domain.studies import StudyState
from pacsflow.workflow.events import EventBus
from pacsflow.workflow.ingest import decide
from pacsflow.workflow.messages import Answer, MessageReception, Receipt, ReceivedMessage
from pacsflow.workflow.ports.clock import Clock
from pacsflow.workflow.ports.uow import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger(__name__)


#: Keeps a report version inside the intake transaction (Results.record).
ReportSink = Callable[[UnitOfWork, Report, str, datetime], int]


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
            self._handle(uow, command, sender.user_id or "hl7")
            self._match_late(uow, command)
            events.append(self._audit_event(uow, sender, command))
        now = self._clock.now()
        for event in events:  # last before commit: the audit chain head stays locked briefly
            uow.audit.append(event, now)

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
            case cmd.LinkPatients(patient, linked):
                for one in (patient, linked):  # A24 may name a patient not registered yet
                    if uow.patients.find(one.primary) is None:
                        _save_patient(uow, one, now)
                uow.patients.link(patient.primary, linked.primary, now)
            case cmd.UnlinkPatients(patient, unlinked):
                uow.patients.unlink(patient, unlinked)
            case cmd.ChangePatientIdentifier(patient, incorrect, correct):
                _change_identifier(uow, patient, incorrect, correct, now)
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
                if existing is None:  # work a new order causes, same transaction
                    self._events.publish(uow, [OrderPlaced(scheduled, now)])
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
            case cmd.LinkPatients(patient, linked):
                return patient_record(
                    self._source,
                    sender,
                    now,
                    action=Action.UPDATE,
                    patients=(*patient.identifiers, *linked.identifiers),
                    description="link",
                )
            case cmd.UnlinkPatients(patient, unlinked):
                return patient_record(
                    self._source,
                    sender,
                    now,
                    action=Action.UPDATE,
                    patients=(patient, unlinked),
                    description="unlink",
                )
            case cmd.ChangePatientIdentifier(_, incorrect, correct):
                return patient_record(
                    self._source,
                    sender,
                    now,
                    action=Action.UPDATE,
                    patients=(correct, incorrect),
                    description="identifier change",
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
                # Every identifier the survivor now holds: images held under an identifier
                # merged into the merged patient earlier are explained too.
                explained = uow.exceptions.open_explained_by(
                    patient_ids=_identifiers_of(uow, *survivor.identifiers, *merged)
                )
            case cmd.LinkPatients(patient, linked):
                # Images of one patient under the other's identifier now match (one person).
                explained = uow.exceptions.open_explained_by(
                    patient_ids=_identifiers_of(uow, *patient.identifiers, *linked.identifiers)
                )
            case cmd.ChangePatientIdentifier(patient, incorrect, correct):
                explained = uow.exceptions.open_explained_by(
                    patient_ids=_identifiers_of(uow, incorrect, correct, *patient.identifiers)
                )
            case _:
                return  # an unlink explains nothing: what it separates stays where it is
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

    def _scheduled(self, order: Order) -> Order:
        return assign_station(order, self._station_rules)


def _existing(uow: UnitOfWork, accession: AccessionNumber) -> Order:
    order = uow.orders.by_accession(accession)
    if order is None:
        raise UnknownOrder(f"no order has accession number {quote(accession)}")
    return order


def _save_patient(uow: UnitOfWork, patient: Patient, at: datetime) -> None:
    uow.patients.save(patient, at)


def _change_identifier(
    uow: UnitOfWork,
    patient: Patient,
    incorrect: PatientIdentifier,
    correct: PatientIdentifier,
    at: datetime,
) -> None:
    """A47: the correct identifier replaces the incorrect one on the patient holding it."""
    if incorrect == correct:
        return
    wrong, right = uow.patients.find(incorrect), uow.patients.find(correct)
    if wrong is not None and right is not None and wrong.primary != right.primary:
        raise IdentifierInUse(
            f"patient identifier {quote(correct.value)} already belongs to another patient than "
            f"{quote(incorrect.value)}; joining two patients is a merge (A40)"
        )
    if wrong is None and right is None:  # neither known: register the patient as now named
        named = tuple(i for i in patient.identifiers if i != incorrect) or (correct,)
        _save_patient(uow, replace(patient, identifiers=named), at)
    uow.patients.change_identifier(incorrect, correct, at)


def _identifiers_of(uow: UnitOfWork, *identifiers: PatientIdentifier) -> list[str]:
    """These identifiers and every identifier of the patients holding them, as they are now."""
    values = {i.value for i in identifiers}
    for identifier in identifiers:
        found = uow.patients.find(identifier)
        if found is not None:
            values.update(i.value for i in found.identifiers)
    return sorted(values)


__all__ = ["Intake"]
