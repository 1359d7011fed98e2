"""HL7 v2 ACK building: MSH swap, MSA codes, ERR per version, character set."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pacsflow.adapters.hl7.ack import AckBuilder, AckCode, AckError, ErrorCode
from pacsflow.adapters.hl7.codec import Message, parse

SAMPLES = Path(__file__).parents[1] / "samples" / "hl7"
MISSING_PID3 = AckError(
    ErrorCode.REQUIRED_FIELD_MISSING, "PID-3 (patient identifier) is required", "PID-3"
)


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def builder() -> AckBuilder:
    return AckBuilder(
        "PACSFLOW",
        "RADIOLOGY",
        control_ids=lambda: "ACK0001",
        clock=lambda: datetime(2024, 3, 15, 8, 30, 1, tzinfo=UTC),
    )


def reply(raw: bytes, code: AckCode, error: AckError | None = None) -> Message:
    return parse(builder().build(parse(raw).msh, code, error=error))


def test_aa_swaps_sender_and_receiver_and_names_the_original() -> None:
    ack = builder().build(parse(sample("adt_a01_v231.hl7")).msh, AckCode.AA)

    assert ack == (
        b"MSH|^~\\&|PACSFLOW|RADIOLOGY|EPIC|GENHOSP|20240315083001+0000||ACK^A01^ACK|ACK0001"
        b"|P|2.3.1\rMSA|AA|ADT0001\r"
    )


def test_full_hd_of_the_sender_is_echoed() -> None:
    raw = sample("adt_a01_v231.hl7").replace(b"|EPIC|GENHOSP|", b"|EPIC^1.2.3^ISO|GENHOSP|")

    ack = reply(raw, AckCode.AA)

    assert ack.msh.receiving_application == ("EPIC", "1.2.3", "ISO")


def test_ae_in_v25_has_err_with_location_code_severity_and_user_message() -> None:
    ack = reply(sample("adt_a04_utf8.hl7"), AckCode.AE, MISSING_PID3)

    assert ack.get("MSA-1") == "AE"
    assert ack.get("MSA-2") == "ADT0102"
    assert ack.get("MSA-3") == "PID-3 (patient identifier) is required"
    err = ack.segment("ERR")
    assert err is not None
    assert err.get(1) == ""
    assert [err.get(2, n) for n in (1, 2, 3)] == ["PID", "1", "3"]
    assert [err.get(3, n) for n in (1, 2, 3)] == ["101", "Required field missing", "HL70357"]
    assert err.get(4) == "E"
    assert err.get(8) == "PID-3 (patient identifier) is required"


def test_ae_before_v25_has_err_1_with_code_in_subcomponents() -> None:
    ack = reply(sample("adt_a01_v231.hl7"), AckCode.AE, MISSING_PID3)

    assert ack.msh.version == "2.3.1"
    err = ack.segment("ERR")
    assert err is not None
    assert [err.get(1, n) for n in (1, 2, 3)] == ["PID", "1", "3"]
    assert [err.get(1, 4, s) for s in (1, 2, 3)] == ["101", "Required field missing", "HL70357"]
    assert err.get(2) == ""


def test_ae_before_v25_keeps_the_code_fourth_when_the_location_is_a_segment() -> None:
    error = AckError(ErrorCode.REQUIRED_FIELD_MISSING, "no observation text", "OBX")

    err = reply(sample("adt_a01_v231.hl7"), AckCode.AE, error).segment("ERR")

    assert err is not None
    assert [err.get(1, n) for n in (1, 2, 3)] == ["OBX", "1", ""]
    assert err.get(1, 4, 1) == "101"


def test_err_location_carries_component_when_given() -> None:
    error = AckError(ErrorCode.REQUIRED_FIELD_MISSING, "accession", "IPC-1.1")

    err = reply(sample("omi_o23_v251.hl7"), AckCode.AE, error).segment("ERR")

    assert err is not None
    assert [err.get(2, n) for n in range(1, 6)] == ["IPC", "1", "1", "1", "1"]


def test_ar_with_internal_error() -> None:
    error = AckError(ErrorCode.APPLICATION_INTERNAL_ERROR, "database unavailable; resend")

    ack = reply(sample("omi_o23_v251.hl7"), AckCode.AR, error)

    assert ack.get("MSA-1") == "AR"
    assert ack.get("ERR-3") == "207"
    assert ack.get("ERR-3.2") == "Application internal error"
    assert ack.get("ERR-2") == ""


@pytest.mark.parametrize(
    ("accept_ack", "code", "expected"),
    [
        ("AL", AckCode.AA, "CA"),
        ("ER", AckCode.AE, "CE"),
        ("SU", AckCode.AR, "CR"),
        ("NE", AckCode.AA, "AA"),
        ("", AckCode.AE, "AE"),
    ],
)
def test_enhanced_mode_answers_with_commit_codes(
    accept_ack: str, code: AckCode, expected: str
) -> None:
    raw = sample("adt_a04_utf8.hl7").replace(
        b"2.5.1||||||UNICODE", f"2.5.1|||{accept_ack}|||UNICODE".encode()
    )
    assert parse(raw).msh.accept_ack_type == accept_ack

    assert reply(raw, code).get("MSA-1") == expected


@pytest.mark.parametrize(
    ("name", "charset", "codec"),
    [
        ("adt_a01_latin1.hl7", "8859/1", "latin-1"),
        ("adt_a04_utf8.hl7", "UNICODE UTF-8", "utf-8"),
    ],
)
def test_ack_is_encoded_in_the_original_charset(name: str, charset: str, codec: str) -> None:
    original = parse(sample(name))
    text = f"{original.get('PID-5')} is not who we expected"

    raw_ack = builder().build(original.msh, AckCode.AE, text=text)

    assert parse(raw_ack).get("MSH-18") == charset
    assert raw_ack.decode(codec).count(text) == 1


def test_ack_text_is_escaped() -> None:
    ack = reply(
        sample("adt_a04_utf8.hl7"), AckCode.AE, AckError(ErrorCode.DATA_TYPE_ERROR, "a|b^c")
    )

    assert ack.get("MSA-3") == "a|b^c"
    assert ack.get("ERR-8") == "a|b^c"


def test_ack_keeps_the_senders_delimiters() -> None:
    raw = b"MSH*:!@%*APP*FAC*****ADT:A01*C1*P*2.3.1\rPID*1**X\r"

    ack = builder().build(parse(raw).msh, AckCode.AA)

    assert ack.startswith(b"MSH*:!@%*PACSFLOW*RADIOLOGY*APP*FAC*")
    assert parse(ack).get("MSA-2") == "C1"


def test_ack_for_unreadable_bytes_is_a_generic_ack() -> None:
    error = AckError(ErrorCode.SEGMENT_SEQUENCE_ERROR, "no MSH", "MSH")

    ack = parse(builder().build_for_raw(b"\x00\xffgarbage", AckCode.AE, error=error))

    assert ack.msh.message_type == "ACK"
    assert ack.msh.version == "2.5.1"
    assert ack.get("MSA-1") == "AE"
    assert ack.get("MSA-2") == ""
    assert ack.get("ERR-2") == "MSH"


def test_ack_for_partly_readable_bytes_uses_what_msh_says() -> None:
    raw = b"MSH|^~\\&|LAB|EAST|||||ORM^O01|C77|T|2.4\rpid|bad\r"

    ack = parse(builder().build_for_raw(raw, AckCode.AE, text="bad segment"))

    assert ack.msh.receiving_application == ("LAB",)
    assert ack.get("MSA-2") == "C77"
    assert ack.msh.processing_id == "T"
    assert ack.msh.message_type == "ACK^O01"


def test_unsupported_charset_is_answered_in_ascii() -> None:
    raw = sample("adt_a01_latin1.hl7").replace(b"8859/1", b"ISO IR87")

    ack = parse(builder().build_for_raw(raw, AckCode.AE, text="charset"))

    assert ack.get("MSH-18") == ""
    assert ack.get("MSA-2") == "ADT0101"


def test_error_code_text_follows_table_0357() -> None:
    assert ErrorCode.UNKNOWN_KEY_IDENTIFIER.text == "Unknown key identifier"
    assert ErrorCode(205).text == "Duplicate key identifier"
