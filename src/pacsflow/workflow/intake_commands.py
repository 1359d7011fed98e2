"""What each intake command does: one table from command type to its handler.

A handler applies the command, names the held studies it may now explain (late match) and
describes the change as an audit event (ATNA). Intake looks each command up once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Generic, TypeVar

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
from pacsflow.domain.events import OrderPlaced
from pacsflow.domain.exception_queue import ExceptionRecord
from pacsflow.domain.orders import AccessionNumber, Order, OrderStatus, StationRule, assign_station
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier
from pacsflow.domain.reports import Report
from pacsflow.workflow.events import EventBus
from pacsflow.workflow.ports.uow import UnitOfWork

#: Keeps a report version inside the intake transaction (Results.record).
ReportSink = Callable[[UnitOfWork, Report, str, datetime], int]


@dataclass(frozen=True, slots=True)
class Applying:
    """What a handler may use while applying one message's commands."""

    uow: UnitOfWork
    now: datetime
    sender: ActiveParticipant
    audit_source: AuditSource
    station_rules: tuple[StationRule, ...]
    events: EventBus
    report_sink: ReportSink | None

    def scheduled(self, order: Order) -> Order:
        """The order with its station assigned by the site's rules."""
        return assign_station(order, self.station_rules)

    def patient_event(
        self, action: Action, patients: Sequence[PatientIdentifier], description: str = ""
    ) -> AuditEvent:
        """A patient record event of this sender."""
        return patient_record(
            self.audit_source,
            self.sender,
            self.now,
            action=action,
            patients=tuple(patients),
            description=description,
        )

    def order_event(
        self, action: Action, patient: PatientIdentifier, accession: str, study: str
    ) -> AuditEvent:
        """An order record event of this sender."""
        return order_record(
            self.audit_source,
            self.sender,
            self.now,
            action=action,
            patient=patient,
            accession_number=accession,
            study_uid=study,
        )


_C = TypeVar("_C")


@dataclass(frozen=True)  # not slotted: Handler[X](...) sets __orig_class__ on the instance
class Handler(Generic[_C]):
    """How intake applies, late-matches and audits one kind of command."""

    apply: Callable[[Applying, _C], None]
    audit: Callable[[Applying, _C], AuditEvent]
    #: The open exceptions the applied command may explain; None: it explains nothing.
    explains: Callable[[UnitOfWork, _C], Sequence[ExceptionRecord]] | None = None


def _register(a: Applying, c: cmd.RegisterPatient | cmd.UpdatePatient) -> None:
    a.uow.patients.save(c.patient, a.now)


def _merge(a: Applying, c: cmd.MergePatients) -> None:
    a.uow.patients.save(c.survivor, a.now)
    for identifier in c.merged:
        if identifier in c.survivor.identifiers:
            continue  # a patient is never merged into itself
        a.uow.patients.merge(identifier, c.survivor.primary, a.now)


def _link(a: Applying, c: cmd.LinkPatients) -> None:
    for one in (c.patient, c.linked):  # A24 may name a patient not registered yet
        if a.uow.patients.find(one.primary) is None:
            a.uow.patients.save(one, a.now)
    a.uow.patients.link(c.patient.primary, c.linked.primary, a.now)


def _unlink(a: Applying, c: cmd.UnlinkPatients) -> None:
    a.uow.patients.unlink(c.patient, c.unlinked)


def _change_identifier(a: Applying, c: cmd.ChangePatientIdentifier) -> None:
    """A47: the correct identifier replaces the incorrect one on the patient holding it."""
    uow, incorrect, correct = a.uow, c.incorrect, c.correct
    if incorrect == correct:
        return
    wrong, right = uow.patients.find(incorrect), uow.patients.find(correct)
    if wrong is not None and right is not None and wrong.primary != right.primary:
        raise IdentifierInUse(
            f"patient identifier {quote(correct.value)} already belongs to another patient than "
            f"{quote(incorrect.value)}; joining two patients is a merge (A40)"
        )
    if wrong is None and right is None:  # neither known: register the patient as now named
        named = tuple(i for i in c.patient.identifiers if i != incorrect) or (correct,)
        uow.patients.save(replace(c.patient, identifiers=named), a.now)
    uow.patients.change_identifier(incorrect, correct, a.now)


def _place_order(a: Applying, c: cmd.PlaceOrder) -> None:
    uow, order = a.uow, c.order
    uow.patients.save(c.patient, a.now)
    existing = uow.orders.by_accession(order.accession_number)
    if existing is not None and existing.patient != order.patient:
        raise DuplicateAccession(
            f"accession number {order.accession_number} already belongs to another patient's order"
        )
    if existing is not None:
        # A repeated NW for the same order: keep the UID the modality may have.
        order = replace(order, study_instance_uid=existing.study_instance_uid)
    scheduled = a.scheduled(order)
    uow.orders.save(scheduled, a.now)
    uow.events.record_order_event(order.accession_number, "placed", a.now)
    if existing is None:  # work a new order causes, same transaction
        a.events.publish(uow, [OrderPlaced(scheduled, a.now)])


def _change_order(a: Applying, c: cmd.ChangeOrder) -> None:
    existing = _existing(a.uow, c.order.accession_number)
    a.uow.patients.save(c.patient, a.now)
    changed = replace(
        a.scheduled(c.order),
        study_instance_uid=existing.study_instance_uid,
        status=existing.status,
    )
    a.uow.orders.save(changed, a.now)
    a.uow.events.record_order_event(c.order.accession_number, "changed", a.now)


def _cancel_order(a: Applying, c: cmd.CancelOrder) -> None:
    existing = _existing(a.uow, c.accession_number)
    status = OrderStatus.DISCONTINUED if c.is_discontinued else OrderStatus.CANCELLED
    a.uow.orders.save(existing.with_status(status), a.now)
    a.uow.events.record_order_event(c.accession_number, status.value, a.now)


def _change_order_status(a: Applying, c: cmd.ChangeOrderStatus) -> None:
    existing = _existing(a.uow, c.accession_number)
    a.uow.orders.save(existing.with_status(c.status), a.now)
    a.uow.events.record_order_event(c.accession_number, c.status.value, a.now)


def _receive_report(a: Applying, c: cmd.ReceiveReport) -> None:
    if a.report_sink is None:
        raise UnsupportedMessage("this node does not take reports")
    a.report_sink(a.uow, c.report, f"hl7:{a.sender.user_id or 'hl7'}", a.now)


def _order_changed(a: Applying, c: cmd.CancelOrder | cmd.ChangeOrderStatus) -> AuditEvent:
    changed = _existing(a.uow, c.accession_number)
    action = Action.DELETE if isinstance(c, cmd.CancelOrder) else Action.UPDATE
    return a.order_event(action, changed.patient, c.accession_number, changed.study_instance_uid)


def _explained_by_order(
    uow: UnitOfWork, c: cmd.PlaceOrder | cmd.ChangeOrder
) -> Sequence[ExceptionRecord]:
    return uow.exceptions.open_explained_by(
        accession=c.order.accession_number, study_uid=c.order.study_instance_uid
    )


def _existing(uow: UnitOfWork, accession: AccessionNumber) -> Order:
    order = uow.orders.by_accession(accession)
    if order is None:
        raise UnknownOrder(f"no order has accession number {quote(accession)}")
    return order


def _identifiers_of(uow: UnitOfWork, *identifiers: PatientIdentifier) -> list[str]:
    """These identifiers and every identifier of the patients holding them, as they are now."""
    values = {i.value for i in identifiers}
    for identifier in identifiers:
        found = uow.patients.find(identifier)
        if found is not None:
            values.update(i.value for i in found.identifiers)
    return sorted(values)


_NO_PATIENT = PatientIdentifier(PatientId(""), Issuer(""))

#: The one dispatch table: every command intake takes, by type.
HANDLERS: dict[type, Handler[Any]] = {
    cmd.RegisterPatient: Handler[cmd.RegisterPatient](
        _register,
        lambda a, c: a.patient_event(Action.CREATE, c.patient.identifiers),
        lambda uow, c: uow.exceptions.open_explained_by(
            patient_ids=[i.value for i in c.patient.identifiers]
        ),
    ),
    cmd.UpdatePatient: Handler[cmd.UpdatePatient](
        _register,
        lambda a, c: a.patient_event(Action.UPDATE, c.patient.identifiers),
        lambda uow, c: uow.exceptions.open_explained_by(
            patient_ids=[i.value for i in c.patient.identifiers]
        ),
    ),
    cmd.MergePatients: Handler[cmd.MergePatients](
        _merge,
        lambda a, c: a.patient_event(Action.UPDATE, (*c.survivor.identifiers, *c.merged), "merge"),
        # Every identifier the survivor now holds: images held under an identifier merged
        # into the merged patient earlier are explained too.
        lambda uow, c: uow.exceptions.open_explained_by(
            patient_ids=_identifiers_of(uow, *c.survivor.identifiers, *c.merged)
        ),
    ),
    cmd.LinkPatients: Handler[cmd.LinkPatients](
        _link,
        lambda a, c: a.patient_event(
            Action.UPDATE, (*c.patient.identifiers, *c.linked.identifiers), "link"
        ),
        # Images of one patient under the other's identifier now match (one person).
        lambda uow, c: uow.exceptions.open_explained_by(
            patient_ids=_identifiers_of(uow, *c.patient.identifiers, *c.linked.identifiers)
        ),
    ),
    # An unlink explains nothing: what it separates stays where it is.
    cmd.UnlinkPatients: Handler[cmd.UnlinkPatients](
        _unlink,
        lambda a, c: a.patient_event(Action.UPDATE, (c.patient, c.unlinked), "unlink"),
    ),
    cmd.ChangePatientIdentifier: Handler[cmd.ChangePatientIdentifier](
        _change_identifier,
        lambda a, c: a.patient_event(Action.UPDATE, (c.correct, c.incorrect), "identifier change"),
        lambda uow, c: uow.exceptions.open_explained_by(
            patient_ids=_identifiers_of(uow, c.incorrect, c.correct, *c.patient.identifiers)
        ),
    ),
    cmd.PlaceOrder: Handler[cmd.PlaceOrder](
        _place_order,
        lambda a, c: a.order_event(
            Action.CREATE, c.order.patient, c.order.accession_number, c.order.study_instance_uid
        ),
        _explained_by_order,
    ),
    cmd.ChangeOrder: Handler[cmd.ChangeOrder](
        _change_order,
        lambda a, c: a.order_event(
            Action.UPDATE, c.order.patient, c.order.accession_number, c.order.study_instance_uid
        ),
        _explained_by_order,
    ),
    cmd.CancelOrder: Handler[cmd.CancelOrder](_cancel_order, _order_changed),
    cmd.ChangeOrderStatus: Handler[cmd.ChangeOrderStatus](_change_order_status, _order_changed),
    cmd.ReceiveReport: Handler[cmd.ReceiveReport](
        _receive_report,
        lambda a, c: a.order_event(
            Action.CREATE,
            c.report.patient or _NO_PATIENT,
            c.report.accession_number,
            c.report.study_instance_uid,
        ),
    ),
}


__all__ = ["HANDLERS", "Applying", "Handler", "ReportSink"]
