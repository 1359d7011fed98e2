"""HL7 ADT/ORM/OMI messages -> pacsflow commands."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from pacsflow.adapters.hl7.codec import parse
from pacsflow.adapters.hl7.errors import (
    RequiredFieldMissing,
    SegmentSequenceError,
    UnknownTableValue,
    UnsupportedEvent,
)
from pacsflow.adapters.hl7.translate import (
    OMI_DEFAULTS,
    ORM_DEFAULTS,
    FieldMap,
    parse_timestamp,
    translate,
)
from pacsflow.domain import commands as cmd
from pacsflow.domain.errors import MalformedMessage, MissingIdentifier, UnsupportedMessage
from pacsflow.domain.orders import AccessionNumber, OrderStatus, Priority, ProcedureCode
from pacsflow.domain.patients import (
    Demographics,
    Issuer,
    Patient,
    PatientId,
    PatientIdentifier,
    PersonName,
)
from pacsflow.domain.uids import is_valid_uid

SAMPLES = Path(__file__).parents[1] / "samples" / "hl7"
SMITH = PatientIdentifier(PatientId("MRN12345"), Issuer("GENHOSP"))
STUDY_UID = "1.2.840.113619.2.55.3.2831164356.1001"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def commands_of(raw: bytes, field_map: FieldMap | None = None) -> list[cmd.Command]:
    return translate(parse(raw), field_map)


def only(raw: bytes, field_map: FieldMap | None = None) -> cmd.Command:
    commands = commands_of(raw, field_map)
    assert len(commands) == 1
    return commands[0]


# --- ADT -------------------------------------------------------------------------------------


def test_a01_registers_patient_with_every_identifier() -> None:
    command = only(sample("adt_a01_v231.hl7"))

    assert command == cmd.RegisterPatient(
        Patient(
            identifiers=(SMITH, PatientIdentifier(PatientId("998877"), Issuer("1.2.3.4.5"))),
            demographics=Demographics(
                name=PersonName("SMITH", "JOHN", "QUINCY", prefix="MR", suffix="JR"),
                birth_date=date(1970, 4, 12),
                sex="M",
            ),
        )
    )


@pytest.mark.parametrize("event", ["A04", "A05"])
def test_a04_and_a05_register(event: str) -> None:
    raw = sample("adt_a01_v231.hl7").replace(b"ADT^A01", f"ADT^{event}".encode())

    assert isinstance(only(raw), cmd.RegisterPatient)


def test_a08_updates_patient_taking_legal_name_and_first_surname_subcomponent() -> None:
    command = only(sample("adt_a08_v25.hl7"))

    assert isinstance(command, cmd.UpdatePatient)
    assert command.patient.identifiers == (SMITH,)
    assert command.patient.demographics == Demographics(
        PersonName("VAN DER BERG", "ANNA"), date(1970, 4, 12), "F"
    )


def test_a31_updates_patient() -> None:
    raw = sample("adt_a08_v25.hl7").replace(b"ADT^A08^ADT_A01", b"ADT^A31^ADT_A05")

    assert isinstance(only(raw), cmd.UpdatePatient)


def test_names_in_latin1_and_utf8_arrive_intact() -> None:
    latin1 = only(sample("adt_a01_latin1.hl7"))
    utf8 = only(sample("adt_a04_utf8.hl7"))

    assert isinstance(latin1, cmd.RegisterPatient)
    assert isinstance(utf8, cmd.RegisterPatient)
    assert latin1.patient.demographics.name == PersonName("MÜLLER", "JÜRGEN")
    assert utf8.patient.demographics.name == PersonName("DVOŘÁK", "ANTONÍN")
    assert utf8.patient.demographics.birth_date == date(1841, 9, 8)


def test_escaped_name_is_unescaped() -> None:
    command = only(sample("adt_a08_escapes.hl7"))

    assert isinstance(command, cmd.UpdatePatient)
    assert command.patient.demographics.name == PersonName("LOPEZ&GARCIA", "ANA^MARIA")


def test_issuer_is_universal_id_when_namespace_is_empty() -> None:
    raw = sample("adt_a04_utf8.hl7").replace(b"MRN88888^^^GENHOSP", b"MRN88888^^^&1.2.3&ISO")

    command = only(raw)

    assert isinstance(command, cmd.RegisterPatient)
    assert command.patient.primary == PatientIdentifier(PatientId("MRN88888"), Issuer("1.2.3"))


def test_partial_birth_date_and_hl7_null_are_dropped() -> None:
    raw = sample("adt_a04_utf8.hl7").replace(b"18410908|M", b'1841|""')

    command = only(raw)

    assert isinstance(command, cmd.RegisterPatient)
    assert command.patient.demographics.birth_date is None
    assert command.patient.demographics.sex == ""


def test_invalid_birth_date_is_malformed_at_pid_7() -> None:
    raw = sample("adt_a04_utf8.hl7").replace(b"18410908", b"18411340")

    with pytest.raises(MalformedMessage) as caught:
        commands_of(raw)

    assert caught.value.location == "PID-7"


@pytest.mark.parametrize(
    "replace",
    [
        (b"MRN88888^^^GENHOSP", b""),
        (b"MRN88888^^^GENHOSP", b"^^^GENHOSP~"),
        (b"PID|", b"ZPI|"),
    ],
)
def test_missing_patient_identifier_is_reported_at_pid_3(replace: tuple[bytes, bytes]) -> None:
    raw = sample("adt_a04_utf8.hl7").replace(*replace)

    with pytest.raises(MissingIdentifier) as caught:
        commands_of(raw)

    assert caught.value.location == "PID-3"
    assert "PID-3 (patient identifier) is required" in str(caught.value)


# --- ORM^O01 ---------------------------------------------------------------------------------


def test_orm_nw_places_order_with_ihe_field_placement() -> None:
    command = only(sample("orm_o01_nw.hl7"))

    assert isinstance(command, cmd.PlaceOrder)
    order = command.order
    assert order.accession_number == "ACC1001"
    assert order.patient == SMITH
    assert command.patient.primary == SMITH
    assert order.study_instance_uid == STUDY_UID
    assert order.status is OrderStatus.SCHEDULED
    assert order.placer_order_number == "PLC1001"
    assert order.filler_order_number == "FIL2001"
    assert order.requested_procedure_id == "RP1001"
    assert order.scheduled_procedure_step_id == "SPS1001"
    assert order.modality == "CT"
    assert order.procedure_code == ProcedureCode("CTHEAD-WO", "RADLEX", "CT head wo contrast")
    assert order.requested_procedure_description == "CT head without contrast"
    assert order.scheduled_start == datetime(2024, 3, 16, 10, 30, tzinfo=UTC)
    assert order.priority is Priority.STAT
    assert order.referring_physician == "WELBY^MARCUS^A"
    assert order.reason == "Headache"
    assert order.scheduled_station_ae == ""


def test_orm_without_obr_44_uses_obr_4_and_obr_16_without_pv1_8() -> None:
    raw = sample("orm_o01_nw.hl7").replace(b"|5678^WELBY^MARCUS^A^^DR", b"|")
    raw = raw.replace(b"|CTHEAD-WO^CT head wo contrast^RADLEX", b"|")

    command = only(raw)

    assert isinstance(command, cmd.PlaceOrder)
    assert command.order.procedure_code == ProcedureCode(
        "CTHEAD", "LOCAL", "CT head without contrast"
    )
    assert command.order.referring_physician == "HOUSE^GREGORY"


def test_orm_without_zds_gets_a_new_study_uid() -> None:
    raw = sample("orm_o01_nw.hl7").split(b"ZDS|")[0]

    command = only(raw)

    assert isinstance(command, cmd.PlaceOrder)
    assert is_valid_uid(command.order.study_instance_uid)
    assert command.order.study_instance_uid.startswith("2.25.")


def test_orm_with_invalid_study_uid_is_malformed_at_its_location() -> None:
    raw = sample("orm_o01_nw.hl7").replace(STUDY_UID.encode(), b"1.2.abc")

    with pytest.raises(MalformedMessage) as caught:
        commands_of(raw)

    assert caught.value.location == "ZDS-1.1"


def test_orm_xo_changes_order_with_offset_time_and_asap_priority() -> None:
    command = only(sample("orm_o01_xo.hl7"))

    assert isinstance(command, cmd.ChangeOrder)
    assert command.order.scheduled_start == datetime(
        2024, 3, 16, 11, 30, tzinfo=timezone(timedelta(hours=-5))
    )
    assert command.order.priority is Priority.ASAP
    assert command.order.study_instance_uid == STUDY_UID


def test_orm_ca_cancels_and_dc_discontinues() -> None:
    assert only(sample("orm_o01_ca.hl7")) == cmd.CancelOrder(AccessionNumber("ACC1001"))
    assert only(sample("orm_o01_dc.hl7")) == cmd.CancelOrder(
        AccessionNumber("ACC1001"), is_discontinued=True
    )


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("IP", OrderStatus.IN_PROGRESS),
        ("CM", OrderStatus.COMPLETED),
        ("DC", OrderStatus.DISCONTINUED),
        ("CA", OrderStatus.CANCELLED),
        ("SC", OrderStatus.SCHEDULED),
    ],
)
def test_orm_sc_changes_status_from_orc_5(code: str, status: OrderStatus) -> None:
    raw = sample("orm_o01_sc.hl7").replace(b"FIL2001^RIS||IP|", f"FIL2001^RIS||{code}|".encode())

    assert only(raw) == cmd.ChangeOrderStatus(AccessionNumber("ACC1001"), status)


def test_orm_sc_with_unknown_status_is_reported_at_orc_5() -> None:
    raw = sample("orm_o01_sc.hl7").replace(b"FIL2001^RIS||IP|", b"FIL2001^RIS||ZZ|")

    with pytest.raises(UnknownTableValue) as caught:
        commands_of(raw)

    assert caught.value.location == "ORC-5"


def test_orm_unsupported_order_control_is_reported_at_orc_1() -> None:
    raw = sample("orm_o01_nw.hl7").replace(b"ORC|NW|", b"ORC|OK|")

    with pytest.raises(UnknownTableValue) as caught:
        commands_of(raw)

    assert caught.value.location == "ORC-1"


def test_orm_empty_order_control_is_a_missing_required_field() -> None:
    raw = sample("orm_o01_nw.hl7").replace(b"ORC|NW|", b"ORC||")

    with pytest.raises(RequiredFieldMissing) as caught:
        commands_of(raw)

    assert caught.value.location == "ORC-1"


def test_orm_without_accession_is_missing_identifier_at_obr_18() -> None:
    raw = sample("orm_o01_nw.hl7").replace(b"|ACC1001|", b"||").replace(b"FIL2001^RIS", b"")

    with pytest.raises(MissingIdentifier) as caught:
        commands_of(raw)

    assert caught.value.location == "OBR-18"
    assert "OBR-18 (accession number) is required" in str(caught.value)


def test_orm_without_orc_is_a_segment_sequence_error() -> None:
    raw = b"\r".join(
        line for line in sample("orm_o01_nw.hl7").split(b"\r") if not line.startswith(b"ORC")
    )

    with pytest.raises(SegmentSequenceError):
        commands_of(raw)


def test_orm_nw_without_pid_is_missing_identifier() -> None:
    raw = sample("orm_o01_nw.hl7").replace(b"PID|", b"NTE|")

    with pytest.raises(MissingIdentifier) as caught:
        commands_of(raw)

    assert caught.value.location == "PID-3"


def test_orm_cancel_needs_no_pid() -> None:
    raw = sample("orm_o01_ca.hl7").replace(b"PID|", b"NTE|")

    assert only(raw) == cmd.CancelOrder(AccessionNumber("ACC1001"))


def test_unsupported_order_control_is_reported_before_a_missing_accession() -> None:
    raw = sample("orm_o01_nw.hl7").replace(b"ORC|NW|", b"ORC|OK|").replace(b"|ACC1001|", b"||")

    with pytest.raises(UnknownTableValue) as caught:
        commands_of(raw)

    assert caught.value.location == "ORC-1"


def test_orm_with_two_orders_gives_two_commands() -> None:
    raw = sample("orm_o01_nw.hl7")
    lines = raw.rstrip(b"\r").split(b"\r")
    second = [
        line.replace(b"ACC1001", b"ACC1002").replace(STUDY_UID.encode(), b"1.2.3.4")
        for line in lines
        if line[:3] in (b"ORC", b"OBR", b"ZDS")
    ]

    commands = commands_of(b"\r".join(lines + second) + b"\r")

    assert [c.order.accession_number for c in commands if isinstance(c, cmd.PlaceOrder)] == [
        "ACC1001",
        "ACC1002",
    ]
    assert [c.order.study_instance_uid for c in commands if isinstance(c, cmd.PlaceOrder)] == [
        STUDY_UID,
        "1.2.3.4",
    ]


def test_orm_timing_falls_back_to_orc_7() -> None:
    raw = sample("orm_o01_nw.hl7").replace(b"|CT|||^^^20240316103000^^S|", b"|CT||||")

    command = only(raw)

    assert isinstance(command, cmd.PlaceOrder)
    assert command.order.scheduled_start == datetime(2024, 3, 16, 10, 30, tzinfo=UTC)
    assert command.order.priority is Priority.STAT


def test_orm_invalid_start_time_is_malformed_at_its_position() -> None:
    raw = sample("orm_o01_nw.hl7").replace(b"20240316103000^^S", b"tomorrow^^S")

    with pytest.raises(MalformedMessage) as caught:
        commands_of(raw)

    assert caught.value.location == "OBR-27.4"


# --- OMI^O23 ---------------------------------------------------------------------------------


def test_omi_places_order_from_ipc_and_tq1() -> None:
    command = only(sample("omi_o23_v251.hl7"))

    assert isinstance(command, cmd.PlaceOrder)
    order = command.order
    assert order.accession_number == "ACC2001"
    assert order.patient == PatientIdentifier(PatientId("MRN55555"), Issuer("GENHOSP"))
    assert order.requested_procedure_id == "RP2001"
    assert order.study_instance_uid == "1.2.840.99.12.2001"
    assert order.scheduled_procedure_step_id == "SPS2001"
    assert order.modality == "MR"
    assert order.scheduled_station_name == "MR_ROOM_1"
    assert order.scheduled_station_ae == "MRAE01"
    assert order.scheduled_start == datetime(2024, 3, 17, 13, 0, tzinfo=UTC)
    assert order.priority is Priority.STAT
    assert order.procedure_code == ProcedureCode("MRBRAIN", "LOCAL", "MR brain with contrast")
    assert order.referring_physician == "CHASE^ROBERT"
    assert order.reason == "Migraine"
    assert command.patient.demographics.name == PersonName("GARCÍA", "MARÍA")


def test_omi_without_accession_is_missing_identifier_at_ipc_1() -> None:
    raw = sample("omi_o23_v251.hl7").replace(b"IPC|ACC2001^RIS|", b"IPC||")
    raw = raw.replace(b"FIL3001^RIS", b"")

    with pytest.raises(MissingIdentifier) as caught:
        commands_of(raw)

    assert caught.value.location == "IPC-1.1"
    assert "none in ORC-3.1, OBR-3.1 either" in str(caught.value)


def test_an_order_without_accession_falls_back_to_the_filler_order_number() -> None:
    orm = sample("orm_o01_nw.hl7").replace(b"|ACC1001|", b"||")
    omi = sample("omi_o23_v251.hl7").replace(b"IPC|ACC2001^RIS|", b"IPC||")

    placed = only(orm)
    changed = only(omi.replace(b"ORC|NW|", b"ORC|XO|"))

    assert isinstance(placed, cmd.PlaceOrder)
    assert placed.order.accession_number == "FIL2001"
    assert isinstance(changed, cmd.ChangeOrder)
    assert changed.order.accession_number == "FIL3001"


def test_the_filler_fallback_reads_obr_3_when_orc_3_is_empty() -> None:
    raw = sample("orm_o01_nw.hl7").replace(b"|ACC1001|", b"||")
    raw = raw.replace(b"PLC1001^EPIC|FIL2001^RIS||SC", b"PLC1001^EPIC|||SC")

    command = only(raw)

    assert isinstance(command, cmd.PlaceOrder)
    assert command.order.accession_number == "FIL2001"


def test_without_fallbacks_the_accession_location_is_required() -> None:
    raw = sample("orm_o01_nw.hl7").replace(b"|ACC1001|", b"||")

    with pytest.raises(MissingIdentifier) as caught:
        commands_of(raw, FieldMap().with_overrides({"accession_fallbacks": ""}))

    assert caught.value.location == "OBR-18"
    assert str(caught.value) == "OBR-18 (accession number) is required"


def test_a_new_order_without_obr_is_not_an_imaging_order() -> None:
    lines = sample("orm_o01_nw.hl7").rstrip(b"\r").split(b"\r")
    raw = b"\r".join(line for line in lines if line[:3] not in (b"OBR", b"ZDS")) + b"\r"
    raw += b"ODS|D||1^Regular diet\r"

    with pytest.raises(UnsupportedMessage) as caught:
        commands_of(raw)

    assert caught.value.location == "OBR"


# --- dispatch and field map ------------------------------------------------------------------


def test_unknown_message_type_is_unsupported_at_msh_9() -> None:
    raw = sample("adt_a01_v231.hl7").replace(b"ADT^A01", b"SIU^S12")

    with pytest.raises(UnsupportedMessage) as caught:
        commands_of(raw)

    assert not isinstance(caught.value, UnsupportedEvent)
    assert caught.value.location == "MSH-9"


def test_unknown_event_of_known_type_is_unsupported_event() -> None:
    raw = sample("adt_a01_v231.hl7").replace(b"ADT^A01", b"ADT^A03")

    with pytest.raises(UnsupportedEvent) as caught:
        commands_of(raw)

    assert caught.value.location == "MSH-9.2"


def test_field_map_defaults_follow_ihe() -> None:
    field_map = FieldMap()

    assert field_map.orm == ORM_DEFAULTS
    assert field_map.omi == OMI_DEFAULTS
    assert (ORM_DEFAULTS.accession_number, ORM_DEFAULTS.study_instance_uid) == ("OBR-18", "ZDS-1.1")
    assert (OMI_DEFAULTS.accession_number, OMI_DEFAULTS.station_ae) == ("IPC-1.1", "IPC-9")


def test_field_map_overrides_apply_to_one_or_both_structures() -> None:
    field_map = FieldMap().with_overrides(
        {"accession_number": "OBR-3", "ORM.station_ae": "OBR-21", "omi.modality": ""}
    )

    assert field_map.orm.accession_number == "OBR-3"
    assert field_map.omi.accession_number == "OBR-3"
    assert field_map.orm.station_ae == "OBR-21"
    assert field_map.omi.station_ae == "IPC-9"
    assert field_map.omi.modality == ""


def test_site_field_map_reads_values_from_other_fields() -> None:
    raw = sample("orm_o01_nw.hl7").replace(b"|CT|||", b"|CT|CTAE07||")
    field_map = FieldMap().with_overrides(
        {"ORM.accession_number": "OBR-3", "ORM.station_ae": "OBR-25", "ORM.study_instance_uid": ""}
    )

    command = only(raw, field_map)

    assert isinstance(command, cmd.PlaceOrder)
    assert command.order.accession_number == "FIL2001"
    assert command.order.scheduled_station_ae == "CTAE07"
    assert command.order.study_instance_uid.startswith("2.25.")


@pytest.mark.parametrize(
    "overrides",
    [
        {"accesion_number": "OBR-18"},
        {"XYZ.accession_number": "OBR-18"},
        {"accession_number": "OBR18"},
        {"modality": "obr-24"},
        {"accession_number": ""},
    ],
)
def test_field_map_rejects_unknown_keys_and_malformed_locations(overrides: dict[str, str]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the messages differ per case
        FieldMap().with_overrides(overrides)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("202403161030", datetime(2024, 3, 16, 10, 30, tzinfo=UTC)),
        ("20240316103015.25", datetime(2024, 3, 16, 10, 30, 15, 250000, tzinfo=UTC)),
        ("20240316", datetime(2024, 3, 16, tzinfo=UTC)),
        (
            "202403161030+0230",
            datetime(2024, 3, 16, 10, 30, tzinfo=timezone(timedelta(hours=2, minutes=30))),
        ),
        ("", None),
        ('""', None),
    ],
)
def test_parse_timestamp(text: str, expected: datetime | None) -> None:
    assert parse_timestamp(text, "TQ1-7") == expected


def test_parse_timestamp_without_offset_uses_the_assumed_zone() -> None:
    zone = timezone(timedelta(hours=1))

    assert parse_timestamp("202403161030", "TQ1-7", zone) == datetime(
        2024, 3, 16, 10, 30, tzinfo=zone
    )


@pytest.mark.parametrize("text", ["2024", "20241316", "2024031610301", "yesterday"])
def test_parse_timestamp_rejects_non_timestamps(text: str) -> None:
    with pytest.raises(MalformedMessage) as caught:
        parse_timestamp(text, "TQ1-7")

    assert caught.value.location == "TQ1-7"
