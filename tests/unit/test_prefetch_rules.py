"""Which priors are relevant: modality, body region, age, count, per procedure code."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pacsflow.domain.prefetch import (
    CurrentStudy,
    PriorCandidate,
    RelevanceRule,
    body_part_in_text,
    choose_priors,
    ordered_body_part,
    rule_for,
    same_region,
)

TODAY = date(2026, 11, 29)


def prior(
    uid: str, days_ago: int | None, *mods: str, parts: tuple[str, ...] = ()
) -> PriorCandidate:
    return PriorCandidate(
        study_instance_uid=uid,
        archive="PACS",
        study_date=TODAY - timedelta(days=days_ago) if days_ago is not None else None,
        modalities=mods,
        body_parts=parts,
    )


def test_the_default_takes_the_three_most_recent_of_the_same_modality_within_five_years() -> None:
    current = CurrentStudy(TODAY, modalities=("CT",))
    found = choose_priors(
        current,
        [
            prior("old", 6 * 365, "CT"),
            prior("a", 30, "CT"),
            prior("mr", 10, "MR"),
            prior("b", 400, "CT", "PT"),
            prior("c", 900, "CT"),
            prior("d", 1200, "CT"),
        ],
    )
    assert [p.study_instance_uid for p in found] == ["a", "b", "c"]


def test_the_current_study_a_future_one_and_duplicates_are_never_chosen() -> None:
    current = CurrentStudy(TODAY, modalities=("CT",), exclude=frozenset({"now"}))
    found = choose_priors(
        current,
        [prior("now", 0, "CT"), prior("later", -3, "CT"), prior("a", 5, "CT"), prior("a", 5, "CT")],
    )
    assert [p.study_instance_uid for p in found] == ["a"]


def test_a_procedure_rule_can_ask_for_other_modalities_and_the_same_region() -> None:
    rules = [
        RelevanceRule(),
        RelevanceRule(
            procedure_code="CTCHEST",
            modalities=("CR", "DX"),
            same_body_part=True,
            years=2,
            max_priors=5,
        ),
    ]
    current = CurrentStudy(TODAY, ("CT",), body_part="CHEST", procedure_code="CTCHEST")
    found = choose_priors(
        current,
        [
            prior("cxr", 100, "CR", parts=("CHEST",)),
            prior("lung", 200, "CT", parts=("LUNG",)),
            prior("head", 50, "CT", parts=("HEAD",)),
            prior("unknown-part", 60, "DX"),
            prior("us", 10, "US", parts=("CHEST",)),
            prior("too-old", 800, "CT", parts=("CHEST",)),
        ],
        rules,
    )
    assert [p.study_instance_uid for p in found] == ["unknown-part", "cxr", "lung"]


def test_rule_choice_falls_back_to_the_default_then_to_the_built_in() -> None:
    special = RelevanceRule(procedure_code="X", max_priors=9)
    default = RelevanceRule(max_priors=1)
    assert rule_for([special, default], "X") is special
    assert rule_for([special, default], "Y") is default
    assert rule_for([special], "") == RelevanceRule()
    with pytest.raises(ValueError, match="negative"):
        RelevanceRule(years=-1)


def test_undated_priors_come_after_dated_ones() -> None:
    found = choose_priors(
        CurrentStudy(TODAY, ("CT",)), [prior("undated", None, "CT"), prior("dated", 9, "CT")]
    )
    assert [p.study_instance_uid for p in found] == ["dated", "undated"]


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("CHEST", "lung", True),
        ("Head", "BRAIN", True),
        ("L-SPINE", "lspine", True),
        ("CHEST", "HEAD", False),
        ("", "CHEST", False),
        ("KNEE", "KNEE", True),
        ("XYZ", "XYZ", True),
    ],
)
def test_body_parts_of_one_region_match(a: str, b: str, same: bool) -> None:
    assert same_region(a, b) is same


priors_strategy = st.lists(
    st.builds(
        prior,
        st.sampled_from(["1", "2", "3", "4", "5", "6", "7"]),
        st.one_of(st.none(), st.integers(-30, 4000)),
        st.sampled_from(["CT", "MR", "CR"]),
    ),
    max_size=20,
)


@given(candidates=priors_strategy, k=st.integers(0, 5), years=st.integers(0, 10))
def test_chosen_priors_are_relevant_unique_recent_first_and_at_most_k(
    candidates: list[PriorCandidate], k: int, years: int
) -> None:
    rule = RelevanceRule(max_priors=k, years=years)
    current = CurrentStudy(TODAY, ("CT",))
    found = choose_priors(current, candidates, [rule])
    assert len(found) <= k
    uids = [p.study_instance_uid for p in found]
    assert len(uids) == len(set(uids))
    for p in found:
        assert "CT" in p.modalities
        if p.study_date is not None:
            assert TODAY - timedelta(days=366 * years + 1) <= p.study_date <= TODAY
    dated = [p.study_date for p in found if p.study_date is not None]
    assert dated == sorted(dated, reverse=True)


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("CT chest w/o contrast", "CHEST"),
        ("CT THORAX", "THORAX"),
        ("MR brain and head", "BRAIN"),
        ("XR both knees", "KNEE"),
        ("CT abdominal aorta", "ABDOMEN"),
        ("CT abdomen and pelvis", "ABDOMENPELVIS"),
        ("CT chest/abdomen/pelvis", "CHESTABDPELVIS"),
        ("MR head & neck", "HEADNECK"),
        ("XR chest and knee", ""),  # several regions, no combined term: not narrowed
        ("CTCHEST", ""),  # a code, not words
        ("", ""),
    ],
)
def test_a_procedure_text_names_its_body_part(text: str, part: str) -> None:
    assert body_part_in_text(text) == part


def test_the_procedure_code_mapping_wins_over_the_text() -> None:
    mapping = {"CTCHEST": "CHEST", "CTSPECIAL": ""}
    assert ordered_body_part("CTCHEST", ["MR brain"], mapping) == "CHEST"
    assert ordered_body_part("CTSPECIAL", ["CT chest"], mapping) == ""  # mapped to none
    assert ordered_body_part("CTX", ["CT 7", "CT chest"], mapping) == "CHEST"
    assert ordered_body_part("CTX", [], mapping) == ""


def test_an_ordered_combined_body_part_keeps_priors_of_each_region() -> None:
    for prior_part in ("CHEST", "LIVER", "PELVIS"):
        assert same_region("CHESTABDPELVIS", prior_part)
    assert not same_region("CHESTABDPELVIS", "HEAD")
