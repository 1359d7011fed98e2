"""Imaging orders and the scheduled procedure step they put on the worklist."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime
from typing import NewType

from pacsflow.domain.patients import PatientIdentifier
from pacsflow.domain.uids import Uid

AccessionNumber = NewType("AccessionNumber", str)


class OrderStatus(enum.StrEnum):
    """Where an order stands; the worklist shows only SCHEDULED and IN_PROGRESS."""

    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    DISCONTINUED = "discontinued"
    CANCELLED = "cancelled"

    @property
    def is_on_worklist(self) -> bool:
        """True while a modality may still pick the order up."""
        return self in (OrderStatus.SCHEDULED, OrderStatus.IN_PROGRESS)


class Priority(enum.StrEnum):
    """Reading and acquisition urgency, most urgent first."""

    STAT = "STAT"
    ASAP = "ASAP"
    ROUTINE = "ROUTINE"


@dataclass(frozen=True, slots=True)
class ProcedureCode:
    """A coded procedure (code value, coding scheme, meaning)."""

    value: str
    scheme: str = ""
    meaning: str = ""


@dataclass(frozen=True, slots=True)
class Order:
    """An imaging order as scheduled by the RIS, with its one scheduled procedure step."""

    accession_number: AccessionNumber
    patient: PatientIdentifier
    study_instance_uid: Uid
    status: OrderStatus = OrderStatus.SCHEDULED
    placer_order_number: str = ""
    filler_order_number: str = ""
    requested_procedure_id: str = ""
    requested_procedure_description: str = ""
    procedure_code: ProcedureCode | None = None
    modality: str = ""
    scheduled_station_ae: str = ""
    scheduled_station_name: str = ""
    scheduled_procedure_step_id: str = ""
    scheduled_start: datetime | None = None
    priority: Priority = Priority.ROUTINE
    referring_physician: str = ""
    reason: str = ""

    def with_status(self, status: OrderStatus) -> Order:
        """The same order in another status."""
        return replace(self, status=status)


@dataclass(frozen=True, slots=True)
class StationRule:
    """Maps a modality and/or procedure code to the station AE that performs it."""

    station_ae: str
    modality: str = ""
    procedure_code: str = ""
    station_name: str = ""

    def applies_to(self, modality: str, procedure_code: str) -> bool:
        """True when every condition this rule sets holds."""
        if self.modality and self.modality.upper() != modality.upper():
            return False
        return not (self.procedure_code and self.procedure_code != procedure_code)


def assign_station(order: Order, rules: tuple[StationRule, ...]) -> Order:
    """Fill the scheduled station from the first rule that applies, unless the RIS sent one.

    Rules that name a procedure code are more specific and are tried first.
    """
    if order.scheduled_station_ae:
        return order
    code = order.procedure_code.value if order.procedure_code else ""
    ordered = sorted(rules, key=lambda r: (not r.procedure_code, not r.modality))
    for rule in ordered:
        if rule.applies_to(order.modality, code):
            return replace(
                order,
                scheduled_station_ae=rule.station_ae,
                scheduled_station_name=order.scheduled_station_name or rule.station_name,
            )
    return order


_PRIORITY_CODES = {"S": Priority.STAT, "A": Priority.ASAP, "T": Priority.ASAP, "P": Priority.ASAP}


def priority_from_code(code: str) -> Priority:
    """HL7 table 0027 priority (S, A, R, P, C, T) or a spelled-out word, as our priority."""
    upper = code.strip().upper()
    if upper in ("STAT", "HIGH"):
        return Priority.STAT
    if upper in ("ASAP", "URGENT"):
        return Priority.ASAP
    return _PRIORITY_CODES.get(upper[:1], Priority.ROUTINE) if upper else Priority.ROUTINE


@dataclass(frozen=True, slots=True)
class WorklistFilter:
    """Exact values and a start window the store can filter on before finer matching."""

    station_ae: str = ""
    modality: str = ""
    accession_number: str = ""
    patient_id: str = ""
    start_from: datetime | None = None
    start_to: datetime | None = None


__all__ = [
    "AccessionNumber",
    "Order",
    "OrderStatus",
    "Priority",
    "ProcedureCode",
    "StationRule",
    "WorklistFilter",
    "assign_station",
    "priority_from_code",
]
