"""Orders: station assignment, priority codes, UIDs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pacsflow.domain.orders import (
    OrderStatus,
    Priority,
    ProcedureCode,
    StationRule,
    assign_station,
    priority_from_code,
)
from pacsflow.domain.patients import fold_text, normalize_identifier
from pacsflow.domain.uids import is_valid_uid, new_uid
from tests import factories as f


def test_station_from_the_ris_is_kept():
    o = f.order(f.patient(), scheduled_station_ae="RIS_AE")
    assert (
        assign_station(o, (StationRule("OTHER", modality="CT"),)).scheduled_station_ae == "RIS_AE"
    )


def test_procedure_code_rule_wins_over_modality_rule():
    o = f.order(f.patient(), scheduled_station_ae="", procedure_code=ProcedureCode("CTHEAD"))
    rules = (StationRule("CT_ANY", modality="CT"), StationRule("CT_NEURO", procedure_code="CTHEAD"))
    assert assign_station(o, rules).scheduled_station_ae == "CT_NEURO"


def test_modality_rule_is_case_insensitive():
    o = f.order(f.patient(), scheduled_station_ae="", modality="mr")
    assert assign_station(o, (StationRule("MR1", modality="MR"),)).scheduled_station_ae == "MR1"


def test_no_rule_leaves_station_empty():
    o = f.order(f.patient(), scheduled_station_ae="", modality="US")
    assert assign_station(o, (StationRule("MR1", modality="MR"),)).scheduled_station_ae == ""


def test_priority_codes_of_hl7_table_0027():
    assert priority_from_code("S") is Priority.STAT
    assert priority_from_code("A") is Priority.ASAP
    assert priority_from_code("R") is Priority.ROUTINE
    assert priority_from_code("") is Priority.ROUTINE
    assert priority_from_code("stat") is Priority.STAT
    assert priority_from_code("URGENT") is Priority.ASAP


def test_worklist_statuses():
    assert {s for s in OrderStatus if s.is_on_worklist} == {
        OrderStatus.SCHEDULED,
        OrderStatus.IN_PROGRESS,
    }


def test_generated_uids_are_valid_and_distinct():
    uids = {new_uid() for _ in range(200)}
    assert len(uids) == 200
    assert all(is_valid_uid(u) for u in uids)


@given(st.text(max_size=80))
def test_uid_validation_rejects_anything_but_dotted_numbers(text):
    if is_valid_uid(text):
        assert all(
            part.isdigit() and (part == "0" or not part.startswith("0")) for part in text.split(".")
        )
        assert len(text) <= 64


def test_leading_zeros_and_separators_are_interface_noise():
    assert normalize_identifier("00-123 45") == normalize_identifier("12345")
    assert fold_text("Dvořák^Antonín") == fold_text("DVORAK ANTONIN")
