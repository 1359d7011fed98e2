"""ORM^O01 and OMI^O23 -> order commands (IHE Radiology TF-2 RAD-4/RAD-13).

Orders are read per ORC group: a group is an ORC and every segment after it up to the next
ORC, so one message may carry several orders; a position is looked up in the group first,
then in the segments before the first ORC (PID, PV1). Where the accession number, Study
Instance UID and the like sit differs between sites, so those positions come from a FieldMap.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo

from pacsflow.adapters.hl7.codec import Location, Message, Segment, get_in
from pacsflow.adapters.hl7.errors import (
    RequiredFieldMissing,
    SegmentSequenceError,
    UnknownTableValue,
)
from pacsflow.adapters.hl7.field_map import (
    FieldMap,
    OrderFieldLocations,
)
from pacsflow.adapters.hl7.translate_adt import read_patient
from pacsflow.adapters.hl7.values import field_text as _text
from pacsflow.adapters.hl7.values import parse_timestamp
from pacsflow.domain import commands as cmd
from pacsflow.domain.errors import MalformedMessage, MissingIdentifier, UnsupportedMessage, quote
from pacsflow.domain.orders import (
    AccessionNumber,
    Order,
    OrderStatus,
    ProcedureCode,
    priority_from_code,
)
from pacsflow.domain.patients import (
    Patient,
)
from pacsflow.domain.uids import Uid, is_valid_uid, new_uid


def orm(message: Message, field_map: FieldMap, zone: tzinfo) -> list[cmd.Command]:
    return _orders(message, field_map.orm, zone, _OrmReader())


def omi(message: Message, field_map: FieldMap, zone: tzinfo) -> list[cmd.Command]:
    return _orders(message, field_map.omi, zone, _OmiReader())


_ORDER_CONTROLS = ("NW", "XO", "CA", "DC", "SC")
_STATUS_BY_CODE = {
    "SC": OrderStatus.SCHEDULED,
    "IP": OrderStatus.IN_PROGRESS,
    "CM": OrderStatus.COMPLETED,
    "DC": OrderStatus.DISCONTINUED,
    "CA": OrderStatus.CANCELLED,
}


@dataclass(frozen=True, slots=True)
class OrderScope:
    """The segments of one ORC group, then the segments before the first ORC."""

    group: tuple[Segment, ...]
    common: tuple[Segment, ...]

    def get(self, location: Location | str, *, repetition: int = 0) -> str:
        where = Location.parse(location) if isinstance(location, str) else location
        segments = self.group if self.has(where.segment) else self.common
        return _text(get_in(segments, where, repetition=repetition))

    def has(self, name: str) -> bool:
        return any(s.name == name for s in self.group)


class _OrmReader:
    """Timing of ORM^O01 (v2.3.1): TQ in OBR-27, else ORC-7."""

    def timing(self, scope: OrderScope) -> tuple[str, str, str]:
        """(start TS, its position, priority code)."""
        start_location = "OBR-27.4" if scope.get("OBR-27.4") else "ORC-7.4"
        priority = scope.get("OBR-27.6") or scope.get("ORC-7.6")
        return scope.get(start_location), start_location, priority


class _OmiReader:
    """Timing of OMI^O23 (v2.5.1): TQ1-7 start and TQ1-9 priority."""

    def timing(self, scope: OrderScope) -> tuple[str, str, str]:
        """(start TS, its position, priority code)."""
        return scope.get("TQ1-7.1"), "TQ1-7", scope.get("TQ1-9.1")


_TimingReader = _OrmReader | _OmiReader


def _orders(
    message: Message, locations: OrderFieldLocations, zone: tzinfo, reader: _TimingReader
) -> list[cmd.Command]:
    groups = _order_groups(message)
    if not groups:
        raise SegmentSequenceError(
            f"{message.msh.message_type} has no ORC (common order) segment", location="ORC"
        )
    # Only new and changed orders carry the patient; a cancel or status needs no PID.
    patient = functools.cache(lambda: read_patient(message))
    common = _common_segments(message)
    return [
        _order_command(OrderScope(group, common), patient, locations, zone, reader)
        for group in groups
    ]


def _order_groups(message: Message) -> list[tuple[Segment, ...]]:
    groups: list[list[Segment]] = []
    for segment in message.segments:
        if segment.name == "ORC":
            groups.append([segment])
        elif groups:
            groups[-1].append(segment)
    return [tuple(g) for g in groups]


def _common_segments(message: Message) -> tuple[Segment, ...]:
    common: list[Segment] = []
    for segment in message.segments:
        if segment.name == "ORC":
            break
        common.append(segment)
    return tuple(common)


def _order_command(
    scope: OrderScope,
    patient_of: Callable[[], Patient],
    locations: OrderFieldLocations,
    zone: tzinfo,
    reader: _TimingReader,
) -> cmd.Command:
    control = scope.get("ORC-1").upper()
    if not control:
        raise RequiredFieldMissing("ORC-1 (order control) is required", location="ORC-1")
    if control not in _ORDER_CONTROLS:
        raise UnknownTableValue(
            f"ORC-1 (order control) {quote(control)} is not one pacsflow handles (HL7 table "
            f"0119); it takes {', '.join(_ORDER_CONTROLS)}",
            location="ORC-1",
        )
    if control in ("NW", "XO") and not scope.has("OBR"):
        raise UnsupportedMessage(
            f"ORC-1 {control} order has no OBR (observation request): pacsflow takes imaging "
            "orders, not diet, supply or pharmacy orders",
            location="OBR",
        )
    accession = _accession(scope, locations)
    match control:
        case "NW":
            patient = patient_of()
            return cmd.PlaceOrder(
                _order(scope, patient, accession, locations, zone, reader), patient
            )
        case "XO":
            patient = patient_of()
            return cmd.ChangeOrder(
                _order(scope, patient, accession, locations, zone, reader), patient
            )
        case "CA":
            return cmd.CancelOrder(accession)
        case "DC":
            return cmd.CancelOrder(accession, is_discontinued=True)
        case _:  # SC, the last of _ORDER_CONTROLS
            code = scope.get("ORC-5").upper()
            status = _STATUS_BY_CODE.get(code)
            if status is None:
                raise UnknownTableValue(
                    f"ORC-5 (order status) {code or '(empty)'!s} is not one pacsflow "
                    f"understands; send one of {', '.join(_STATUS_BY_CODE)}",
                    location="ORC-5",
                )
            return cmd.ChangeOrderStatus(accession, status)


def _accession(scope: OrderScope, locations: OrderFieldLocations) -> AccessionNumber:
    value = first_accession(scope, locations)
    if not value:
        where, *fallbacks = locations.accession_chain()
        tried = f"; none in {', '.join(map(str, fallbacks))} either" if fallbacks else ""
        raise MissingIdentifier(
            f"{where} (accession number) is required{tried}", location=str(where)
        )
    return AccessionNumber(value)


def first_accession(scope: OrderScope, locations: OrderFieldLocations) -> str:
    """The accession number at the first location of the chain that holds one ("" if none)."""
    return next((v for v in map(scope.get, locations.accession_chain()) if v), "")


def _order(
    scope: OrderScope,
    patient: Patient,
    accession: AccessionNumber,
    locations: OrderFieldLocations,
    zone: tzinfo,
    reader: _TimingReader,
) -> Order:
    def mapped(key: str) -> str:
        where = locations.location(key)
        return scope.get(where) if where else ""

    start_text, start_location, priority = reader.timing(scope)
    universal = _coded(scope, "OBR-4")
    procedure = _coded(scope, "OBR-44") or universal
    description = (universal.meaning if universal else "") or (
        procedure.meaning if procedure else ""
    )
    return Order(
        accession_number=accession,
        patient=patient.primary,
        study_instance_uid=_study_uid(mapped("study_instance_uid"), locations),
        placer_order_number=scope.get("ORC-2.1") or scope.get("OBR-2.1"),
        filler_order_number=scope.get("ORC-3.1") or scope.get("OBR-3.1"),
        requested_procedure_id=mapped("requested_procedure_id"),
        requested_procedure_description=description,
        procedure_code=procedure,
        modality=mapped("modality").upper(),
        scheduled_station_ae=mapped("station_ae"),
        scheduled_station_name=mapped("station_name"),
        scheduled_procedure_step_id=mapped("scheduled_procedure_step_id"),
        scheduled_start=parse_timestamp(start_text, start_location, zone),
        priority=priority_from_code(priority),
        referring_physician=_physician(scope, "PV1-8") or _physician(scope, "OBR-16"),
        reason=scope.get("OBR-31.2") or scope.get("OBR-31.1"),
    )


def _coded(scope: OrderScope, location: str) -> ProcedureCode | None:
    value = scope.get(f"{location}.1")
    if not value:
        return None
    return ProcedureCode(value, scope.get(f"{location}.3"), scope.get(f"{location}.2"))


def _physician(scope: OrderScope, location: str) -> str:
    """An XCN (id ^ family ^ given ^ middle) as a DICOM person name, FAMILY^GIVEN^MIDDLE."""
    family = scope.get(f"{location}.2.1")  # XCN-2 is FN from v2.3 on: take the surname
    parts = [family, scope.get(f"{location}.3"), scope.get(f"{location}.4")]
    return "^".join(parts).rstrip("^")


def _study_uid(value: str, locations: OrderFieldLocations) -> Uid:
    if not value:
        return new_uid()
    if not is_valid_uid(value):
        raise MalformedMessage(
            f"{locations.study_instance_uid} (Study Instance UID) {quote(value)} is not a valid "
            "DICOM UID (digits and dots, at most 64 characters)",
            location=locations.study_instance_uid,
        )
    return Uid(value)


__all__ = ["OrderScope", "first_accession", "omi", "orm"]
