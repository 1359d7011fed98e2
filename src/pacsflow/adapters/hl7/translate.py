"""HL7 v2 ADT and order messages -> pacsflow commands (IHE Radiology TF-2, RAD-1/4/12/13).

Dispatch is on MSH-9 through one table. Orders are read per ORC group: a group is an ORC and
every segment after it up to the next ORC, so one ORM/OMI may carry several orders; a
position is looked up in the group first, then in the segments before the first ORC (PID,
PV1). Where the accession number, Study Instance UID and the like sit differs between sites,
so those positions come from a FieldMap.

HL7 timestamps without an offset are read in `assume_zone` (UTC unless configured): HL7 v2
leaves them in the sender's local time, which the message does not state.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo

from pacsflow.adapters.hl7.codec import Location, Message, Repetition, Segment, get_in
from pacsflow.adapters.hl7.errors import (
    RequiredFieldMissing,
    SegmentSequenceError,
    UnknownTableValue,
    UnsupportedEvent,
)
from pacsflow.adapters.hl7.field_map import (
    FIELD_MAP_KEYS,
    OMI_DEFAULTS,
    ORM_DEFAULTS,
    ORU_DEFAULTS,
    FieldMap,
    OrderFieldLocations,
)
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
    Demographics,
    Issuer,
    Patient,
    PatientId,
    PatientIdentifier,
    PersonName,
)
from pacsflow.domain.reports import Report, ReportStatus, status_from_code
from pacsflow.domain.uids import Uid, is_valid_uid, new_uid

_TS = re.compile(
    r"^(\d{4})(\d{2})(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,4}))?)?)?)?"
    r"(?:([+-])(\d{2})(\d{2}))?$"
)
_HL7_NULL = '""'


# --- dispatch --------------------------------------------------------------------------------

Translator = Callable[[Message, FieldMap, tzinfo], list[cmd.Command]]


def translate(
    message: Message, field_map: FieldMap | None = None, *, assume_zone: tzinfo = UTC
) -> list[cmd.Command]:
    """The commands a message asks for; InvalidInput (with the position) when it cannot."""
    header = message.msh
    handler = _HANDLERS.get((header.message_code, header.trigger_event))
    if handler is None:
        if any(code == header.message_code for code, _ in _HANDLERS):
            raise UnsupportedEvent(
                f"MSH-9 (message type) {header.message_type}: pacsflow does not handle "
                f"{header.message_code} event {header.trigger_event or '(empty)'}",
                location="MSH-9.2",
            )
        raise UnsupportedMessage(
            f"MSH-9 (message type) {header.message_type or '(empty)'} is not handled; "
            "pacsflow takes ADT^A01/A04/A05/A08/A24/A31/A37/A40/A47, ORM^O01, OMI^O23 and "
            "ORU^R01",
            location="MSH-9",
        )
    return handler(message, field_map or FieldMap(), assume_zone)


def _register(message: Message, _: FieldMap, __: tzinfo) -> list[cmd.Command]:
    return [cmd.RegisterPatient(read_patient(message))]


def _update(message: Message, _: FieldMap, __: tzinfo) -> list[cmd.Command]:
    return [cmd.UpdatePatient(read_patient(message))]


def _orm(message: Message, field_map: FieldMap, zone: tzinfo) -> list[cmd.Command]:
    return _orders(message, field_map.orm, zone, _OrmReader())


def _omi(message: Message, field_map: FieldMap, zone: tzinfo) -> list[cmd.Command]:
    return _orders(message, field_map.omi, zone, _OmiReader())


def _merge(message: Message, _field_map: FieldMap, _zone: tzinfo) -> list[cmd.Command]:
    """ADT^A40: each PID (survivor) is followed by the MRG naming the identifiers merged in."""
    commands: list[cmd.Command] = []
    survivor: Patient | None = None
    for segment in message.segments:
        if segment.name == "PID":
            survivor = _patient_of(segment)
        elif segment.name == "MRG":
            if survivor is None:
                raise SegmentSequenceError("MRG must follow its PID", location="MRG")
            merged = tuple(_identifier(r) for r in segment.repetitions(1) if _text(r.get(1)))
            if not merged:
                raise MissingIdentifier(
                    "MRG-1 (prior patient identifier) is required", location="MRG-1"
                )
            commands.append(cmd.MergePatients(survivor, merged))
            survivor = None
    if not commands:
        raise MissingIdentifier("ADT^A40 needs a PID and an MRG segment", location="MRG")
    return commands


def _link(message: Message, _field_map: FieldMap, _zone: tzinfo) -> list[cmd.Command]:
    """ADT^A24 (IHE ITI-30): PID, then the PID of the patient linked to it; same person."""
    patient, linked = _two_patients(message, "A24")
    return [cmd.LinkPatients(patient, linked)]


def _unlink(message: Message, _field_map: FieldMap, _zone: tzinfo) -> list[cmd.Command]:
    """ADT^A37 (IHE ITI-30): the two PIDs of an earlier A24, no longer linked."""
    patient, unlinked = _two_patients(message, "A37")
    return [cmd.UnlinkPatients(patient.primary, unlinked.primary)]


def _two_patients(message: Message, event: str) -> tuple[Patient, Patient]:
    """The two PID segments of A24/A37 (MSH EVN PID [PD1] [PV1] PID [PD1] [PV1])."""
    pids = [segment for segment in message.segments if segment.name == "PID"]
    if len(pids) != 2:
        raise SegmentSequenceError(
            f"ADT^{event} needs exactly two PID segments (the patient, then the other "
            f"patient), not {len(pids)}",
            location="PID",
        )
    first = _patient_of(pids[0])
    try:
        second = _patient_of(pids[1])
    except MissingIdentifier as exc:
        raise MissingIdentifier(
            "PID-3 (patient identifier) of the second PID is required", location="PID-3"
        ) from exc
    return first, second


def _change_identifier(message: Message, _field_map: FieldMap, _zone: tzinfo) -> list[cmd.Command]:
    """ADT^A47 (IHE ITI-30): PID-3 the correct identifier, MRG-1 the incorrect one it replaces.

    The correct identifier is the PID-3 repetition of the incorrect one's assigning authority,
    else the first. Several PID + MRG groups are read like A40's.
    """
    commands: list[cmd.Command] = []
    patient: Patient | None = None
    for segment in message.segments:
        if segment.name == "PID":
            patient = _patient_of(segment)
        elif segment.name == "MRG":
            if patient is None:
                raise SegmentSequenceError("MRG must follow its PID", location="MRG")
            incorrect = tuple(_identifier(r) for r in segment.repetitions(1) if _text(r.get(1)))
            if not incorrect:
                raise MissingIdentifier(
                    "MRG-1 (prior patient identifier list) is required", location="MRG-1"
                )
            for wrong in incorrect:
                others = [i for i in patient.identifiers if i != wrong]  # PID-3 may list it too
                if not others:
                    raise MissingIdentifier(
                        "PID-3 (patient identifier) must carry the correct identifier, not only "
                        "the MRG-1 one it replaces",
                        location="PID-3",
                    )
                right = next((i for i in others if i.issuer == wrong.issuer), others[0])
                commands.append(cmd.ChangePatientIdentifier(patient, wrong, right))
            patient = None
    if not commands:
        raise MissingIdentifier("ADT^A47 needs a PID and an MRG segment", location="MRG")
    return commands


#: OBX value types whose OBX-5 is report text.
_TEXT_TYPES = frozenset({"TX", "FT", "ST", "CE", "CWE", ""})
#: OBX-3 codes that carry a Study Instance UID instead of text (DCM 113014, or the keyword).
_STUDY_UID_CODES = frozenset({"113014", "STUDYINSTANCEUID", "STUDY INSTANCE UID"})
#: Statuses whose report carries results (HL7 table 0123 P, F, C): no text, no report.
_STATUSES_WITH_TEXT = frozenset(
    {ReportStatus.PRELIMINARY, ReportStatus.FINAL, ReportStatus.CORRECTED}
)
#: ED-4 encodings whose ED-5 data is readable text as sent (table 0299 A; "ASCII" in use).
_TEXT_ENCODINGS = frozenset({"", "A", "ASCII"})


def _observation_text(obx: Segment) -> list[str]:
    """The report lines of one OBX: OBX-5 of a text type, or of an ED carrying text."""
    value_type = _text(obx.get(2)).upper()
    if value_type in _TEXT_TYPES:
        return [_text(r.get(1)) for r in obx.repetitions(5)]
    if value_type == "ED":
        return [
            _text(r.get(5))
            for r in obx.repetitions(5)
            if _text(r.get(4)).upper() in _TEXT_ENCODINGS
            and (_text(r.get(2)).upper() == "TEXT" or _text(r.get(3)).lower().startswith("text/"))
        ]
    return []


def _oru(message: Message, field_map: FieldMap, zone: tzinfo) -> list[cmd.Command]:
    """ORU^R01: one report version per OBR (its OBX lines are the text), IHE RAD-28 style.

    Accession number: the field map's chain, read in the OBR and the ORC before it (by
    default OBR-18 as in the order, else the filler order number ORC-3, OBR-3); Study
    Instance UID: ZDS-1, or an OBX whose OBX-3 is 113014 (DCM); status OBR-25; interpreter
    OBR-32; observation time OBR-7.
    """
    pid = message.segment("PID")
    patient = _patient_of(pid).primary if pid is not None and _text(pid.get(3)) else None
    commands: list[cmd.Command] = []
    zds_uid = _text(message.get("ZDS-1.1"))
    groups: list[list[Segment]] = []
    orders: list[tuple[Segment, ...]] = []  # each OBR with the ORC just before it, if any
    orc: tuple[Segment, ...] = ()
    for segment in message.segments:
        if segment.name == "ORC":
            orc = (segment,)
        elif segment.name == "OBR":
            groups.append([segment])
            orders.append((*orc, segment))
            orc = ()
        elif groups and segment.name in ("OBX", "NTE", "ZDS"):
            groups[-1].append(segment)
    if not groups:
        raise MissingIdentifier("ORU^R01 needs an OBR segment", location="OBR")
    for n, ((obr, *rest), order) in enumerate(zip(groups, orders, strict=True), start=1):
        where = f"OBR[{n}]"
        lines: list[str] = []
        study_uid = zds_uid
        for seg in rest:
            if seg.name == "ZDS":
                study_uid = _text(seg.get(1)) or study_uid
            elif seg.name == "OBX":
                code = (_text(seg.get(3, 1)) or _text(seg.get(3, 2))).upper()
                if code in _STUDY_UID_CODES or _text(seg.get(3, 2)).upper() in _STUDY_UID_CODES:
                    study_uid = _text(seg.get(5)) or study_uid
                else:
                    lines.extend(_observation_text(seg))
            elif seg.name == "NTE":
                lines.extend(_text(r.get(1)) for r in seg.repetitions(3))
        status_code = _text(obr.get(25))
        if not status_code:
            raise MissingIdentifier(f"{where}-25 (result status) is required", location="OBR-25")
        text = "\n".join(lines).strip("\n")
        status = status_from_code(status_code)
        if not text.strip() and status in _STATUSES_WITH_TEXT:
            raise RequiredFieldMissing(
                f"{where} (result status {status_code}) has no observation text: no OBX-5 of a "
                "text type (TX, FT, ST, CE, CWE, or ED with text) and no NTE; a report needs "
                "its text",
                location="OBX-5" if any(seg.name == "OBX" for seg in rest) else "OBX",
            )
        interpreter = " ".join(
            part for part in (_text(obr.get(32, 1, 2)), _text(obr.get(32, 1, 3))) if part
        ) or _text(obr.get(32, 1, 1))
        commands.append(
            cmd.ReceiveReport(
                Report(
                    accession_number=_first_accession(_Scope(order, ()), field_map.oru),
                    status=status,
                    text=text,
                    patient=patient,
                    study_instance_uid=study_uid,
                    radiologist=interpreter,
                    observed_at=parse_timestamp(obr.get(7), "OBR-7", zone),
                    report_id=_text(obr.get(3)),
                )
            )
        )
    return commands


_HANDLERS: dict[tuple[str, str], Translator] = {
    ("ADT", "A01"): _register,
    ("ADT", "A04"): _register,
    ("ADT", "A05"): _register,
    ("ADT", "A08"): _update,
    ("ADT", "A24"): _link,
    ("ADT", "A31"): _update,
    ("ADT", "A37"): _unlink,
    ("ADT", "A40"): _merge,
    ("ADT", "A47"): _change_identifier,
    ("ORM", "O01"): _orm,
    ("OMI", "O23"): _omi,
    ("ORU", "R01"): _oru,
}


# --- patients --------------------------------------------------------------------------------


def read_patient(message: Message) -> Patient:
    """The patient of PID: every PID-3 identifier (first is primary), name, birth date, sex."""
    pid = message.segment("PID")
    if pid is None:
        raise MissingIdentifier(
            "PID-3 (patient identifier) is required, but the message has no PID segment",
            location="PID-3",
        )
    return _patient_of(pid)


def _patient_of(pid: Segment) -> Patient:
    """The patient a PID segment describes."""
    identifiers = tuple(_identifier(rep) for rep in pid.repetitions(3) if _text(rep.get(1)))
    if not identifiers:
        raise MissingIdentifier("PID-3 (patient identifier) is required", location="PID-3")
    return Patient(
        identifiers=identifiers,
        demographics=Demographics(
            name=_person_name(pid.repetitions(5)),
            birth_date=_birth_date(pid.get(7)),
            sex=_text(pid.get(8)).upper(),
        ),
    )


def _identifier(rep: Repetition) -> PatientIdentifier:
    # CX-4 assigning authority is an HD: namespace ID & universal ID & universal ID type.
    issuer = _text(rep.get(4, 1)) or _text(rep.get(4, 2))
    return PatientIdentifier(PatientId(_text(rep.get(1))), Issuer(issuer))


def _person_name(reps: tuple[Repetition, ...]) -> PersonName:
    # XPN-7 name type L is the legal name; otherwise the first repetition is the name.
    chosen = next((r for r in reps if r.get(7).upper() == "L"), reps[0] if reps else None)
    if chosen is None:
        return PersonName()
    return PersonName(
        family=_text(chosen.get(1, 1)),  # XPN-1 is FN from v2.3 on: surname & own surname...
        given=_text(chosen.get(2)),
        middle=_text(chosen.get(3)),
        suffix=_text(chosen.get(4)),
        prefix=_text(chosen.get(5)),
    )


def _birth_date(text: str) -> date | None:
    text = _text(text)
    if len(text) < 8:
        return None  # no value, or only a year or month: not a date a person is matched on
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError as exc:
        raise MalformedMessage(
            f"PID-7 (date of birth) {quote(text)} is not a date (YYYYMMDD)", location="PID-7"
        ) from exc


# --- orders ----------------------------------------------------------------------------------

_ORDER_CONTROLS = ("NW", "XO", "CA", "DC", "SC")
_STATUS_BY_CODE = {
    "SC": OrderStatus.SCHEDULED,
    "IP": OrderStatus.IN_PROGRESS,
    "CM": OrderStatus.COMPLETED,
    "DC": OrderStatus.DISCONTINUED,
    "CA": OrderStatus.CANCELLED,
}


@dataclass(frozen=True, slots=True)
class _Scope:
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

    def timing(self, scope: _Scope) -> tuple[str, str, str]:
        """(start TS, its position, priority code)."""
        start_location = "OBR-27.4" if scope.get("OBR-27.4") else "ORC-7.4"
        priority = scope.get("OBR-27.6") or scope.get("ORC-7.6")
        return scope.get(start_location), start_location, priority


class _OmiReader:
    """Timing of OMI^O23 (v2.5.1): TQ1-7 start and TQ1-9 priority."""

    def timing(self, scope: _Scope) -> tuple[str, str, str]:
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
        _order_command(_Scope(group, common), patient, locations, zone, reader) for group in groups
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
    scope: _Scope,
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


def _accession(scope: _Scope, locations: OrderFieldLocations) -> AccessionNumber:
    value = _first_accession(scope, locations)
    if not value:
        where, *fallbacks = locations.accession_chain()
        tried = f"; none in {', '.join(map(str, fallbacks))} either" if fallbacks else ""
        raise MissingIdentifier(
            f"{where} (accession number) is required{tried}", location=str(where)
        )
    return AccessionNumber(value)


def _first_accession(scope: _Scope, locations: OrderFieldLocations) -> str:
    """The accession number at the first location of the chain that holds one ("" if none)."""
    return next((v for v in map(scope.get, locations.accession_chain()) if v), "")


def _order(
    scope: _Scope,
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


def _coded(scope: _Scope, location: str) -> ProcedureCode | None:
    value = scope.get(f"{location}.1")
    if not value:
        return None
    return ProcedureCode(value, scope.get(f"{location}.3"), scope.get(f"{location}.2"))


def _physician(scope: _Scope, location: str) -> str:
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


def parse_timestamp(text: str, location: str, zone: tzinfo = UTC) -> datetime | None:
    """An HL7 TS/DTM (YYYYMMDD[HH[MM[SS[.S...]]]][+/-ZZZZ]) as an aware datetime.

    Without an offset the time is read in `zone`. Empty -> None; a value that is not a
    timestamp -> MalformedMessage at `location`.
    """
    text = _text(text)
    if not text:
        return None
    match = _TS.match(text)
    if match is None:
        raise MalformedMessage(
            f"{location} {quote(text)} is not an HL7 timestamp (YYYYMMDDHHMM[SS][+ZZZZ])",
            location=location,
        )
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    tz = zone
    if sign:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        tz = timezone(-offset if sign == "-" else offset)
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")),
            tzinfo=tz,
        )
    except ValueError as exc:
        raise MalformedMessage(
            f"{location} {quote(text)} is not a valid date and time", location=location
        ) from exc


def _text(value: str) -> str:
    """A field's text with HL7's explicit null ("") read as empty."""
    value = value.strip()
    return "" if value == _HL7_NULL else value


__all__ = [
    "FIELD_MAP_KEYS",
    "OMI_DEFAULTS",
    "ORM_DEFAULTS",
    "ORU_DEFAULTS",
    "FieldMap",
    "OrderFieldLocations",
    "parse_timestamp",
    "read_patient",
    "translate",
]
