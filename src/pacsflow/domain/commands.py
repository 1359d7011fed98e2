"""What the outside world asks pacsflow to do, in the business's words."""

from __future__ import annotations

from dataclasses import dataclass

from pacsflow.domain.orders import AccessionNumber, Order, OrderStatus
from pacsflow.domain.patients import Patient, PatientIdentifier
from pacsflow.domain.reports import Report


@dataclass(frozen=True, slots=True)
class RegisterPatient:
    """Register a patient, or refresh the demographics of a known one (ADT A01/A04/A05)."""

    patient: Patient


@dataclass(frozen=True, slots=True)
class UpdatePatient:
    """Replace the demographics of a patient (ADT A08/A31); registers an unknown patient."""

    patient: Patient


@dataclass(frozen=True, slots=True)
class MergePatients:
    """Merge patients into a survivor (ADT A40): their history follows the survivor."""

    survivor: Patient
    merged: tuple[PatientIdentifier, ...]


@dataclass(frozen=True, slots=True)
class LinkPatients:
    """Record that two patients are one person (ADT A24); both records and histories stay."""

    patient: Patient
    linked: Patient


@dataclass(frozen=True, slots=True)
class UnlinkPatients:
    """Undo a link between two patients (ADT A37): each keeps its own history again."""

    patient: PatientIdentifier
    unlinked: PatientIdentifier


@dataclass(frozen=True, slots=True)
class ChangePatientIdentifier:
    """Replace an incorrect identifier of a patient by the correct one (ADT A47)."""

    patient: Patient
    incorrect: PatientIdentifier
    correct: PatientIdentifier


@dataclass(frozen=True, slots=True)
class ReceiveReport:
    """Keep a report version from the reporting system (ORU^R01) and attach it to its study."""

    report: Report


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """Schedule a new imaging order for a patient (ORM/OMI order control NW)."""

    order: Order
    patient: Patient


@dataclass(frozen=True, slots=True)
class ChangeOrder:
    """Change the details of a scheduled order (order control XO)."""

    order: Order
    patient: Patient


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """Take an order off the worklist: cancelled before, or discontinued after it started."""

    accession_number: AccessionNumber
    is_discontinued: bool = False


@dataclass(frozen=True, slots=True)
class ChangeOrderStatus:
    """Set an order's status as the RIS reports it (order control SC)."""

    accession_number: AccessionNumber
    status: OrderStatus


Command = (
    RegisterPatient
    | UpdatePatient
    | MergePatients
    | LinkPatients
    | UnlinkPatients
    | ChangePatientIdentifier
    | PlaceOrder
    | ChangeOrder
    | CancelOrder
    | ChangeOrderStatus
    | ReceiveReport
)

__all__ = [
    "CancelOrder",
    "ChangeOrder",
    "ChangeOrderStatus",
    "ChangePatientIdentifier",
    "Command",
    "LinkPatients",
    "MergePatients",
    "PlaceOrder",
    "ReceiveReport",
    "RegisterPatient",
    "UnlinkPatients",
    "UpdatePatient",
]
