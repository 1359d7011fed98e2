"""HL7 v2 ER7 parsing, escaping and building."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacsflow.adapters.hl7.building import (
    Repeated,
    encode_message,
    encode_msh,
    encode_segment,
)
from pacsflow.adapters.hl7.codec import (
    Location,
    parse,
    read_header,
)
from pacsflow.adapters.hl7.er7 import (
    DEFAULT_DELIMITERS,
    Delimiters,
    escape,
    unescape,
)
from pacsflow.adapters.hl7.errors import SegmentSequenceError, UnsupportedCharset
from pacsflow.domain.errors import InvalidInput, MalformedMessage, quote

SAMPLES = Path(__file__).parents[1] / "samples" / "hl7"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def test_parse_reads_msh_header_fields() -> None:
    message = parse(sample("omi_o23_v251.hl7"))

    header = message.msh
    assert header.sender_application == "RIS"
    assert header.sender_facility == "RADIOLOGY"
    assert header.receiving_application == ("PACSFLOW",)
    assert header.control_id == "OMI0001"
    assert (header.message_code, header.trigger_event, header.message_structure) == (
        "OMI",
        "O23",
        "OMI_O23",
    )
    assert header.message_type == "OMI^O23"
    assert header.version == "2.5.1"
    assert header.processing_id == "P"
    assert header.charset == "UNICODE UTF-8"
    assert not header.is_enhanced_mode


def test_msh_1_and_2_are_the_delimiters_and_msh_3_is_the_sender() -> None:
    message = parse(sample("adt_a01_v231.hl7"))

    assert message.get("MSH-1") == "|"
    assert message.get("MSH-2") == "^~\\&"
    assert message.get("MSH-3") == "EPIC"
    assert message.get("MSH-9.2") == "A01"


def test_get_reads_components_subcomponents_and_repetitions() -> None:
    message = parse(sample("adt_a01_v231.hl7"))

    assert message.get("PID-3") == "MRN12345"
    assert message.get("PID-3.4") == "GENHOSP"
    assert message.get("PID-3.4.2") == "2.16.840.1.113883.3.1"
    assert message.get("PID-3", repetition=1) == "998877"
    assert message.get("PID-3.4.2", repetition=1) == "1.2.3.4.5"
    assert [r.get(1) for r in message.repetitions("PID-3")] == ["MRN12345", "998877"]


def test_get_returns_empty_text_for_anything_absent() -> None:
    message = parse(sample("adt_a01_v231.hl7"))

    assert message.get("PID-3", repetition=5) == ""
    assert message.get("PID-99") == ""
    assert message.get("PID-3.9") == ""
    assert message.get("ZZZ-1") == ""
    assert message.get("PID-3", occurrence=1) == ""
    assert message.repetitions("PID-2") == ()
    assert message.segment("OBR") is None


def test_segments_may_be_separated_by_lf_or_crlf() -> None:
    raw = sample("adt_a01_v231.hl7")

    for separator in (b"\n", b"\r\n"):
        message = parse(raw.replace(b"\r", separator))
        assert [s.name for s in message.segments] == ["MSH", "EVN", "PID", "PV1"]


def test_latin1_message_is_decoded_per_msh_18() -> None:
    message = parse(sample("adt_a01_latin1.hl7"))

    assert message.charset == "latin-1"
    assert message.get("PID-5") == "MÜLLER"


def test_utf8_message_is_decoded_per_msh_18() -> None:
    message = parse(sample("adt_a04_utf8.hl7"))

    assert message.charset == "utf-8"
    assert message.get("PID-5") == "DVOŘÁK"


def test_ascii_message_with_high_bytes_falls_back_and_records_it() -> None:
    utf8 = parse(sample("adt_a04_utf8.hl7").replace(b"UNICODE UTF-8", b""))
    latin1 = parse(sample("adt_a01_latin1.hl7").replace(b"8859/1", b"ASCII"))

    assert (utf8.charset, utf8.is_charset_guessed, utf8.get("PID-5")) == ("utf-8", True, "DVOŘÁK")
    assert (latin1.charset, latin1.is_charset_guessed) == ("latin-1", True)
    assert latin1.get("PID-5") == "MÜLLER"


def test_unsupported_charset_is_invalid_input_at_msh_18() -> None:
    raw = sample("adt_a01_latin1.hl7").replace(b"8859/1", b"ISO IR87")

    with pytest.raises(UnsupportedCharset) as caught:
        parse(raw)

    assert isinstance(caught.value, InvalidInput)
    assert caught.value.location == "MSH-18"


def test_escape_sequences_are_resolved() -> None:
    message = parse(sample("adt_a08_escapes.hl7"))

    assert message.get("PID-5.1") == "LOPEZ&GARCIA"
    assert message.get("PID-5.2") == "ANA^MARIA"
    assert message.get("PID-11") == "1|2 MAIN ST~REAR"
    assert message.get("NTE-3") == "Line one\nLine two \\ backslash Aé"


@pytest.mark.parametrize(
    ("escaped", "text"),
    [
        ("a\\H\\b\\N\\c", "abc"),
        ("\\.sp\\x", "\nx"),
        ("\\.in+4\\x", "x"),
        ("\\Zabc\\x", "\\Zabc\\x"),
        ("unterminated \\F", "unterminated \\F"),
        ("\\X0\\", "\\X0\\"),
        ("\\XC3\\\\XA9\\", "é"),
        ("\\P\\", "\\P\\"),
    ],
)
def test_unescape_edge_cases(escaped: str, text: str) -> None:
    assert unescape(escaped, DEFAULT_DELIMITERS, "utf-8") == text


def test_hex_escape_is_decoded_in_message_charset() -> None:
    assert unescape("\\XE9\\", charset="latin-1") == "é"
    assert unescape("\\XC3A9\\", charset="utf-8") == "é"


def test_truncation_character_of_v27_is_read_and_escaped() -> None:
    raw = b"MSH|^~\\&#|A|B|||||ADT^A08|1|P|2.7\rPID|1||X^^^H||A\\P\\B#C\r"

    message = parse(raw)

    assert message.delimiters.truncation == "#"
    assert message.get("PID-5") == "A#B#C"
    assert escape("#", message.delimiters) == "\\P\\"


def test_custom_delimiters_are_honoured() -> None:
    raw = b"MSH*:!@%*APP*FAC*****ADT:A01*1*P*2.3.1\rPID*1**ID1:::HOSP!ID2*** ignored\r"

    message = parse(raw)

    assert message.delimiters == Delimiters("*", ":", "!", "@", "%")
    assert message.get("PID-3.4") == "HOSP"
    assert message.get("PID-3", repetition=1) == "ID2"
    assert message.msh.message_type == "ADT^A01"


@pytest.mark.parametrize(
    ("raw", "location"),
    [
        (b"", "MSH"),
        (b"PID|1||X\r", "MSH"),
        (b"MSHA^~\\&|X\r", "MSH-1"),
        (b"MSH|^~|X\r", "MSH-2"),
        (b"MSH|^^\\&|X\r", "MSH-2"),
        (b"MSH|^~\\&|A|B\rpid|1\r", "segment 2"),
        (b"MSH|^~\\&|A|B\rPIDX|1\r", "segment 2"),
    ],
)
def test_malformed_messages_say_where(raw: bytes, location: str) -> None:
    with pytest.raises(MalformedMessage) as caught:
        parse(raw)

    assert caught.value.location == location


def test_second_msh_is_a_segment_sequence_error() -> None:
    raw = b"MSH|^~\\&|A|B\rMSH|^~\\&|A|B\r"

    with pytest.raises(SegmentSequenceError):
        parse(raw)


def test_read_header_reads_what_it_can_from_an_unparsable_message() -> None:
    raw = b"MSH|^~\\&|LAB|EAST|||||ORM^O01|C77||2.4\rpid|bad\r"

    header = read_header(raw)

    assert header is not None
    assert (header.sender_application, header.control_id, header.version) == ("LAB", "C77", "2.4")
    assert read_header(b"garbage") is None
    assert read_header(b"") is None


@pytest.mark.parametrize(
    ("text", "location"),
    [
        ("PID-3", Location("PID", 3)),
        ("ZDS-1.1", Location("ZDS", 1, 1)),
        ("PID-3.4.2", Location("PID", 3, 4, 2)),
    ],
)
def test_location_parse(text: str, location: Location) -> None:
    assert Location.parse(text) == location
    assert str(location) == text


@pytest.mark.parametrize("text", ["", "PID", "PID-0", "pid-3", "PID-3.", "PID-3.1.2.3", "PI-3"])
def test_location_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError, match="HL7 position"):
        Location.parse(text)


def test_builder_escapes_values_and_trims_trailing_empties() -> None:
    segment = encode_segment(
        "OBX",
        ["1", "TX", ("CODE", "a^b", ("x", "")), "", "line1\nline2|", Repeated(("r1", "r~2")), ""],
    )

    assert segment == "OBX|1|TX|CODE^a\\S\\b^x||line1\\X0A\\line2\\F\\|r1~r\\R\\2"


def test_builder_output_parses_back() -> None:
    msh = encode_msh(
        ["PACSFLOW", "", "RIS", "", "20240101", "", ("ORU", "R01"), "ID1", "P", "2.5.1"]
    )
    obx = encode_segment("OBX", ["1", "TX", "", "", "Ä & ^ \\ ~ |\r\nend"])

    message = parse(encode_message([msh, obx], "UNICODE UTF-8"))

    assert message.msh.message_type == "ORU^R01"
    assert message.get("OBX-5") == "Ä & ^ \\ ~ |\r\nend"


def test_encode_segment_rejects_bad_names() -> None:
    with pytest.raises(ValueError, match="segment name"):
        encode_segment("MSH", [])
    with pytest.raises(ValueError, match="segment name"):
        encode_segment("obx", [])


DELIMITER_SETS = st.sampled_from(
    [DEFAULT_DELIMITERS, Delimiters("*", ":", "!", "@", "%"), Delimiters(truncation="#")]
)


@settings(database=None, deadline=None)
@given(text=st.text(), delimiters=DELIMITER_SETS, charset=st.sampled_from(["ascii", "utf-8"]))
def test_escape_then_unescape_is_identity(text: str, delimiters: Delimiters, charset: str) -> None:
    escaped = escape(text, delimiters)

    assert unescape(escaped, delimiters, charset) == text
    assert "\r" not in escaped
    assert "\n" not in escaped
    assert delimiters.field not in escaped.replace(f"{delimiters.escape}F{delimiters.escape}", "")


@settings(database=None, deadline=None)
@given(values=st.lists(st.text(), min_size=1, max_size=5))
def test_built_fields_parse_back_to_the_same_text(values: list[str]) -> None:
    msh = encode_msh(["A", "", "B", "", "", "", ("ADT", "A08"), "1", "P", "2.5.1"])
    segment = encode_segment("ZZZ", values)

    message = parse(encode_message([msh, segment], "UNICODE UTF-8"))

    assert [message.get(f"ZZZ-{n}") for n in range(1, len(values) + 1)] == values


def test_quote_shows_a_value_as_received_and_controls_as_hex() -> None:
    assert quote("^~\\&") == "'^~\\&'"
    assert quote("A\x0bB\rC") == "'A\\x0bB\\x0dC'"
