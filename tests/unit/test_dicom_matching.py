"""C-FIND attribute matching and return-key projection (PS3.4 C.2.2.2)."""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import Dataset, config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence
from pynetdicom.dsutils import encode

from pacsflow.adapters.dicom.matching import matches, project
from pacsflow.domain.errors import MalformedMessage

# No example database: hypothesis must not write .hypothesis/ into the work tree.
_PROPERTY = settings(database=None, max_examples=200, deadline=None)


def _ds(**keys: Any) -> Dataset:
    """A dataset from keyword=value pairs; a list of dicts becomes a sequence of items.

    Values skip pydicom's validation: queries hold ranges and wildcards, and some tests
    need deliberately malformed values.
    """
    ds = Dataset()
    for keyword, value in keys.items():
        tag = tag_for_keyword(keyword)
        assert tag is not None, keyword
        vr = dictionary_VR(tag)
        if vr == "SQ":
            value = Sequence([_ds(**item) for item in value])
        ds.add(DataElement(tag, vr, value, validation_mode=config.IGNORE))
    return ds


def _sps(**keys: Any) -> Dataset:
    """A query or worklist entry with one scheduled procedure step item."""
    return _ds(ScheduledProcedureStepSequence=[keys])


def _encoded(ds: Dataset) -> bytes:
    """The dataset as pynetdicom would put it on the wire."""
    data = encode(ds, True, True)
    assert data is not None
    return data


# Universal matching and ignored attributes


def test_empty_key_matches_anything_including_missing_attribute() -> None:
    query = _ds(PatientName="", PatientID="", StudyDate="")
    assert matches(query, _ds(PatientName="DOE^JOHN"))
    assert matches(query, Dataset())


def test_character_set_and_query_level_are_never_matched() -> None:
    query = _ds(SpecificCharacterSet="ISO_IR 192", QueryRetrieveLevel="STUDY", PatientID="P1")
    candidate = _ds(SpecificCharacterSet="ISO_IR 100", PatientID="P1")
    assert matches(query, candidate)


def test_group_length_in_query_is_ignored() -> None:
    query = _ds(PatientID="P1")
    query.add_new(0x00100000, "UL", 1234)
    assert matches(query, _ds(PatientID="P1"))


# Single value matching


def test_single_value_matches_exactly_ignoring_padding_spaces() -> None:
    assert matches(_ds(PatientID=" P1 "), _ds(PatientID="P1"))
    assert not matches(_ds(PatientID="P1"), _ds(PatientID="P12"))


def test_non_pn_strings_are_case_sensitive() -> None:
    assert not matches(_ds(Modality="mr"), _ds(Modality="MR"))
    assert not matches(_sps(ScheduledStationAETitle="aa32"), _sps(ScheduledStationAETitle="AA32"))


def test_missing_or_empty_candidate_value_fails_a_matching_key() -> None:
    assert not matches(_ds(PatientID="P1"), Dataset())
    assert not matches(_ds(PatientID="P1"), _ds(PatientID=""))


def test_numeric_keys_compare_by_value() -> None:
    assert matches(_ds(SeriesNumber="7"), _ds(SeriesNumber="007"))
    assert matches(_ds(PatientWeight="70.0"), _ds(PatientWeight="70"))
    assert not matches(_ds(SeriesNumber="7"), _ds(SeriesNumber="8"))


def test_binary_key_matches_equal_bytes_only() -> None:
    query = Dataset()
    query.add_new(0x00291010, "OB", b"\x01\x02")
    same = Dataset()
    same.add_new(0x00291010, "OB", b"\x01\x02")
    other = Dataset()
    other.add_new(0x00291010, "OB", b"\x01\x03")
    assert matches(query, same)
    assert not matches(query, other)
    assert not matches(query, Dataset())


# Wild card matching


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("AV35*", "AV35674", True),
        ("*674", "AV35674", True),
        ("AV?5674", "AV35674", True),
        ("AV?674", "AV35674", False),
        ("AV35", "AV35674", False),
        ("*", "", True),
        ("A.C", "ABC", False),
        ("A.C*", "A.CD", True),
        ("(X)+*", "(X)+Y", True),
    ],
)
def test_wildcards_anchor_at_both_ends_and_escape_everything_else(
    pattern: str, value: str, expected: bool
) -> None:
    assert matches(_ds(PatientID=pattern), _ds(PatientID=value)) is expected


def test_lone_asterisk_is_universal_even_without_candidate_value() -> None:
    assert matches(_ds(PatientID="*"), Dataset())
    assert matches(_sps(CommentsOnTheScheduledProcedureStep="*"), _sps(Modality="MR"))


def test_wildcards_do_not_apply_to_uids() -> None:
    assert not matches(_ds(StudyInstanceUID="1.2.*"), _ds(StudyInstanceUID="1.2.3"))


def test_wildcard_in_date_is_malformed() -> None:
    with pytest.raises(MalformedMessage) as raised:
        matches(_ds(StudyDate="2026*"), _ds(StudyDate="20260101"))
    assert raised.value.location == "StudyDate"


# Person name matching


@pytest.mark.parametrize(
    ("query", "value", "expected"),
    [
        ("DOE^JOHN", "Doe^John", True),
        ("doe^john", "DOE^JOHN", True),
        ("DOE^JOHN^^^", "DOE^JOHN", True),
        ("DOE^JOHN", "DOE^JOHN^^^", True),
        ("DOE*", "DOE^JOHN", True),
        ("doe*", "DOE^JOHN", True),
        ("D?E^JOHN", "Doe^john", True),
        ("DOE", "DOE^JOHN", False),
        ("DOE^JANE", "DOE^JOHN", False),
        ("DOE^JOHN", "DOE^JOHN=ドウ^ジョン", True),
        ("=ドウ^ジョン", "DOE^JOHN=ドウ^ジョン", True),
        ("=ドウ^ジョン", "DOE^JOHN", False),
    ],
)
def test_person_names_match_case_insensitively_group_by_group(
    query: str, value: str, expected: bool
) -> None:
    assert matches(_ds(PatientName=query), _ds(PatientName=value)) is expected


def test_person_name_of_only_separators_is_universal() -> None:
    assert matches(_ds(PatientName="^^"), Dataset())


# List of UID matching and multi-valued candidates


def test_uid_list_matches_any_listed_uid() -> None:
    query = _ds(StudyInstanceUID=["1.2.3", "1.2.4"])
    assert matches(query, _ds(StudyInstanceUID="1.2.4"))
    assert not matches(query, _ds(StudyInstanceUID="1.2.5"))


def test_multi_valued_candidate_matches_when_any_value_matches() -> None:
    entry = _sps(ScheduledStationAETitle=["AA32", "AA33"])
    assert matches(_sps(ScheduledStationAETitle="AA33"), entry)
    assert matches(_sps(ScheduledStationAETitle="AA3?"), entry)
    assert not matches(_sps(ScheduledStationAETitle="AA34"), entry)


# Range matching


@pytest.mark.parametrize(
    ("query", "value", "expected"),
    [
        ("20260101-20260131", "20260115", True),
        ("20260101-20260131", "20260101", True),
        ("20260101-20260131", "20260131", True),
        ("20260101-20260131", "20260201", False),
        ("-20260131", "19991231", True),
        ("-20260131", "20260201", False),
        ("20260101-", "20991231", True),
        ("20260101-", "20251231", False),
        ("20260115", "20260115", True),
        ("20260115", "20260116", False),
        ("20260115", "2026.01.15", True),
    ],
)
def test_date_keys_match_single_dates_and_inclusive_ranges(
    query: str, value: str, expected: bool
) -> None:
    assert matches(_ds(StudyDate=query), _ds(StudyDate=value)) is expected


@pytest.mark.parametrize(
    ("query", "value", "expected"),
    [
        ("120000-", "120000", True),
        ("120000-", "115959.999999", False),
        ("120000-", "13", True),
        ("-1300", "130059", True),
        ("-1300", "1301", False),
        ("-13", "135959.999999", True),
        ("-13", "14", False),
        ("0800-1200", "0800", True),
        ("0800-1200", "075959", False),
        ("0800-1200", "1200", True),
        ("0800-1200", "120100", False),
        ("1200", "120000.000", True),
        ("1200", "120001", False),
        ("10:30-11:00", "103000", True),
    ],
)
def test_time_keys_normalize_shortened_values(query: str, value: str, expected: bool) -> None:
    assert matches(_ds(StudyTime=query), _ds(StudyTime=value)) is expected


@pytest.mark.parametrize(
    ("query", "value", "expected"),
    [
        ("20260101-20260131", "20260131235959", True),
        ("20260101-20260131", "20260201", False),
        ("2026-", "20260101000000", True),
        ("2026-", "20251231235959.999999", False),
        ("-202601", "20260131", True),
        ("202601011200-", "20260101120000+0100", True),
        ("20260101120000-0500", "20260101120000", True),
        ("20260101120000-0500-20260102", "20260101130000", True),
        ("202601-2027", "20270615", True),
        ("2026-1200", "20260101", True),  # 2026 at UTC-12:00, not a range to year 1200
    ],
)
def test_datetime_keys_match_partial_values_and_ranges(
    query: str, value: str, expected: bool
) -> None:
    assert matches(_ds(AcquisitionDateTime=query), _ds(AcquisitionDateTime=value)) is expected


@pytest.mark.parametrize("query", ["-", "2026-01-01", "20260132-", "25-", "20260101--"])
def test_malformed_date_query_raises(query: str) -> None:
    with pytest.raises(MalformedMessage):
        matches(_ds(StudyDate=query), _ds(StudyDate="20260101"))


def test_malformed_key_raises_even_when_an_earlier_key_already_fails() -> None:
    query = _ds(PatientID="NOPE", StudyDate="yesterday")
    with pytest.raises(MalformedMessage):
        matches(query, _ds(PatientID="P1", StudyDate="20260101"))


def test_malformed_candidate_value_just_fails_to_match() -> None:
    assert not matches(_ds(StudyDate="20260101-"), _ds(StudyDate="someday"))
    assert not matches(_ds(SeriesNumber="1"), _ds(PatientID="x", SeriesNumber=None))


# Combined date-time range matching (PS3.4 C.2.2.2.5.1)


@pytest.mark.parametrize(
    ("date", "time", "expected"),
    [
        ("20260106", "0800", True),  # middle day: any time
        ("20260105", "1900", True),  # first day after 10:00
        ("20260105", "0900", False),  # first day before 10:00
        ("20260107", "1759", True),
        ("20260107", "1801", False),  # last day after 18:00
        ("20260108", "1200", False),
    ],
)
def test_date_and_time_ranges_combine_into_one_interval(
    date: str, time: str, expected: bool
) -> None:
    query = _ds(StudyDate="20260105-20260107", StudyTime="1000-1800")
    assert matches(query, _ds(StudyDate=date, StudyTime=time)) is expected


def test_open_combined_ranges() -> None:
    after = _ds(StudyDate="20260105-", StudyTime="1000-")
    assert matches(after, _ds(StudyDate="20260301", StudyTime="0100"))
    assert not matches(after, _ds(StudyDate="20260105", StudyTime="0959"))
    before = _ds(StudyDate="-20260105", StudyTime="-1000")
    assert matches(before, _ds(StudyDate="20250101", StudyTime="2300"))
    assert not matches(before, _ds(StudyDate="20260105", StudyTime="1001"))


def test_combined_range_takes_a_candidate_without_time_as_the_whole_day() -> None:
    query = _ds(StudyDate="20260105-20260107", StudyTime="1000-1800")
    assert matches(query, _ds(StudyDate="20260105"))
    assert not matches(query, _ds(StudyDate="20260104"))
    assert not matches(query, _ds(StudyTime="1200"))


def test_combined_matching_applies_inside_sequence_items() -> None:
    query = _sps(
        ScheduledProcedureStepStartDate="20260105-20260106",
        ScheduledProcedureStepStartTime="2200-0600",
    )
    entry = _sps(ScheduledProcedureStepStartDate="20260105", ScheduledProcedureStepStartTime="23")
    assert matches(query, entry)


def test_date_range_with_single_time_matches_independently() -> None:
    query = _ds(StudyDate="20260105-20260107", StudyTime="1000")
    assert matches(query, _ds(StudyDate="20260106", StudyTime="1000"))
    assert not matches(query, _ds(StudyDate="20260106", StudyTime="1100"))


# Sequence matching


def test_sequence_with_empty_item_or_no_item_is_universal() -> None:
    assert matches(_ds(ScheduledProcedureStepSequence=[{}]), Dataset())
    assert matches(_ds(ScheduledProcedureStepSequence=[]), Dataset())
    assert matches(_sps(Modality="", ScheduledStationAETitle=""), Dataset())


def test_sequence_matches_when_one_item_matches_all_item_keys() -> None:
    entry = _ds(
        ScheduledProcedureStepSequence=[
            {"Modality": "CT", "ScheduledStationAETitle": "CT1"},
            {"Modality": "MR", "ScheduledStationAETitle": "MR1"},
        ]
    )
    assert matches(_sps(Modality="MR", ScheduledStationAETitle="MR1"), entry)
    assert not matches(_sps(Modality="MR", ScheduledStationAETitle="CT1"), entry)
    assert not matches(_sps(Modality="MR"), _ds(PatientID="P1"))


def test_nested_sequences_match_recursively() -> None:
    code = {"CodeValue": "P1", "CodingSchemeDesignator": "L"}
    entry = _sps(Modality="MR", ScheduledProtocolCodeSequence=[code])
    assert matches(_sps(ScheduledProtocolCodeSequence=[{"CodeValue": "P1"}]), entry)
    assert not matches(_sps(ScheduledProtocolCodeSequence=[{"CodeValue": "P2"}]), entry)
    assert matches(_sps(ScheduledProtocolCodeSequence=[{"CodeValue": ""}]), _sps(Modality="MR"))


def test_sequence_key_with_two_items_is_malformed() -> None:
    query = _ds(ScheduledProcedureStepSequence=[{"Modality": "MR"}, {"Modality": "CT"}])
    with pytest.raises(MalformedMessage) as raised:
        matches(query, _sps(Modality="MR"))
    assert raised.value.location == "ScheduledProcedureStepSequence"


# Projection


def test_project_returns_exactly_the_requested_keys() -> None:
    query = _ds(PatientName="", PatientID="P1", AccessionNumber="", QueryRetrieveLevel="STUDY")
    candidate = _ds(PatientName="DOE^JOHN", PatientID="P1", PatientSex="M", StudyID="9")
    result = project(query, candidate)
    assert [e.keyword for e in result] == [e.keyword for e in query]
    assert result.PatientName == "DOE^JOHN"
    assert result.PatientID == "P1"
    assert result.AccessionNumber == ""
    assert result.QueryRetrieveLevel == "STUDY"


def test_project_keeps_only_matching_items_projected_onto_the_query_item() -> None:
    query = _sps(Modality="MR", ScheduledStationAETitle="")
    candidate = _ds(
        ScheduledProcedureStepSequence=[
            {"Modality": "CT", "ScheduledStationAETitle": "CT1", "ScheduledStationName": "A"},
            {"Modality": "MR", "ScheduledStationAETitle": "MR1", "ScheduledStationName": "B"},
        ]
    )
    items = project(query, candidate).ScheduledProcedureStepSequence
    assert len(items) == 1
    assert [e.keyword for e in items[0]] == ["Modality", "ScheduledStationAETitle"]
    assert items[0].ScheduledStationAETitle == "MR1"


def test_project_with_empty_keys_in_item_projects_every_item() -> None:
    query = _sps(Modality="")
    candidate = _ds(ScheduledProcedureStepSequence=[{"Modality": "CT"}, {"Modality": "MR"}])
    items = project(query, candidate).ScheduledProcedureStepSequence
    assert [item.Modality for item in items] == ["CT", "MR"]


@pytest.mark.parametrize("query_items", [[], [{}]])
def test_project_with_zero_length_item_returns_the_entire_sequence(
    query_items: list[dict[str, str]],
) -> None:
    query = _ds(ScheduledProcedureStepSequence=query_items)
    candidate = _sps(Modality="MR", ScheduledStationName="B")
    items = project(query, candidate).ScheduledProcedureStepSequence
    assert [e.keyword for e in items[0]] == ["Modality", "ScheduledStationName"]


def test_project_gives_empty_values_for_attributes_the_candidate_lacks() -> None:
    query = _ds(PatientName="", PatientWeight="", OtherPatientIDsSequence=[{"PatientID": ""}])
    result = project(query, Dataset())
    assert result["PatientName"].is_empty
    assert result["PatientWeight"].is_empty
    assert result["OtherPatientIDsSequence"].VR == "SQ"
    assert len(result.OtherPatientIDsSequence) == 0
    assert _encoded(result)


def test_project_leaves_query_and_candidate_untouched_and_shares_nothing() -> None:
    query = _ds(PatientName="", ScheduledProcedureStepSequence=[{}])
    query.OtherPatientIDsSequence = Sequence([_ds(PatientID="")])
    candidate = _ds(
        SpecificCharacterSet="ISO_IR 100",
        PatientName="MÜLLER^JÖRG",
        ScheduledProcedureStepSequence=[{"ScheduledStationAETitle": ["AA32", "AA33"]}],
        OtherPatientIDsSequence=[{"PatientID": "X1"}],
    )
    before = (_encoded(query), _encoded(candidate))

    result = project(query, candidate)
    result.PatientName = "CHANGED"
    result.ScheduledProcedureStepSequence[0].ScheduledStationAETitle.append("ZZ")
    result.OtherPatientIDsSequence[0].PatientID = "CHANGED"

    assert (_encoded(query), _encoded(candidate)) == before
    assert result["PatientName"] is not candidate["PatientName"]
    step = candidate.ScheduledProcedureStepSequence[0]
    assert step.ScheduledStationAETitle == ["AA32", "AA33"]


def test_project_output_encodes_like_the_candidate_values() -> None:
    query = _ds(PatientName="", ScheduledProcedureStepSequence=[{"Modality": ""}])
    candidate = _ds(PatientName="DOE^JOHN", ScheduledProcedureStepSequence=[{"Modality": "MR"}])
    expected = _ds(PatientName="DOE^JOHN", ScheduledProcedureStepSequence=[{"Modality": "MR"}])
    assert _encoded(project(query, candidate)) == _encoded(expected)


# Properties

_TEXT = st.text(
    alphabet=string.ascii_letters + string.digits + " .^$+()[]{}|-_",
    min_size=1,
    max_size=16,
).map(str.strip)
_NAMES = st.text(alphabet=string.ascii_letters + "^", min_size=1, max_size=24)


@_PROPERTY
@given(value=_TEXT.filter(bool))
def test_any_wildcard_free_value_matches_itself(value: str) -> None:
    assert matches(_ds(PatientID=value), _ds(PatientID=value))


@_PROPERTY
@given(value=_TEXT.filter(bool), data=st.data())
def test_question_mark_stands_for_any_single_character(value: str, data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(value) - 1))
    pattern = value[:index] + "?" + value[index + 1 :]
    assert matches(_ds(PatientID=pattern), _ds(PatientID=value))
    assert not matches(_ds(PatientID=pattern + "?"), _ds(PatientID=value))


@_PROPERTY
@given(value=_TEXT)
def test_lone_asterisk_matches_every_value(value: str) -> None:
    assert matches(_ds(PatientID="*"), _ds(PatientID=value))


@_PROPERTY
@given(name=_NAMES)
def test_person_names_ignore_case(name: str) -> None:
    assert matches(_ds(PatientName=name.upper()), _ds(PatientName=name.lower()))


_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientSex",
    "AccessionNumber",
    "StudyInstanceUID",
    "StudyDate",
    "Modality",
)


@_PROPERTY
@given(
    requested=st.sets(st.sampled_from(_KEYWORDS)),
    stored=st.dictionaries(st.sampled_from(_KEYWORDS), st.sampled_from(["", "1", "20260101"])),
)
def test_project_returns_the_query_key_set(requested: set[str], stored: dict[str, str]) -> None:
    query = _ds(**dict.fromkeys(requested, ""))
    result = project(query, _ds(**stored))
    assert {e.keyword for e in result} == requested
