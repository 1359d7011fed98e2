"""Candidate scoring: the keying errors it catches, and invariants over any input."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, date, datetime

from hypothesis import given
from hypothesis import strategies as st

from pacsflow.domain.candidates import (
    MIN_SCORE,
    CandidateKind,
    HeldStudy,
    birth_date_variants,
    edit_distance,
    identity_evidence,
    is_transposition,
    rank_candidates,
    score_order,
    score_patient,
    similarity,
    typing_variants,
)
from pacsflow.domain.orders import AccessionNumber, OrderStatus
from pacsflow.domain.patients import Demographics, Issuer, PatientId, PatientIdentifier, PersonName
from tests import factories as f

STUDY_DAY = date(2026, 11, 28)


def _held(received, modalities=("CT",)) -> HeldStudy:
    return HeldStudy(received=received, study_date=STUDY_DAY, modalities=modalities)


def _codes(evidence) -> set[str]:
    return {e.code for e in evidence}


def test_the_same_identity_scores_every_identity_point() -> None:
    p = f.patient("123456", family="DOE", given="JANE")
    c = score_patient(_held(f.received(p)), p)
    assert _codes(c.evidence) == {"same_patient_id", "same_name", "same_birth_date"}
    assert c.score == 60


def test_transposed_digits_in_the_patient_id_are_near() -> None:
    p = f.patient("123456")
    [e] = [e for e in identity_evidence(f.received(p, patient_id="124356"), p) if "id" in e.code]
    assert e.code == "near_patient_id"
    assert "swapped" in e.detail


def test_a_missing_issuer_on_the_image_still_counts_as_the_same_id() -> None:
    p = f.patient("0042-A", issuer="HOSP")
    [e, *_] = identity_evidence(f.received(p, patient_id="42a", issuer=""), p)
    assert e.code == "same_patient_id"
    assert "issuer missing" in e.detail
    assert "written differently" in e.detail


def test_the_same_id_of_another_issuer_counts_less() -> None:
    p = f.patient("777777", issuer="HOSP")
    evidence = identity_evidence(f.received(p, issuer="OTHER"), p)
    assert "same_patient_id_other_issuer" in _codes(evidence)


def test_swapped_name_components_and_day_month_swaps_are_caught() -> None:
    p = f.patient(family="MÜLLER", given="ANNA", birth=date(1980, 3, 7))
    got = f.received(p, family="Anna", given="Muller", birth=date(1980, 7, 3))
    codes = _codes(identity_evidence(got, p))
    assert {"swapped_name", "near_birth_date"} <= codes


def test_a_typo_in_the_name_is_similar_and_a_different_sex_counts_against() -> None:
    p = f.patient(family="JOHANSSON", given="ERIK", sex="M")
    got = f.received(p, family="JOHANSON", patient_id="X", sex="F")
    evidence = identity_evidence(got, p)
    assert _codes(evidence) == {"similar_name", "same_birth_date", "different_sex"}
    assert score_patient(_held(got), p).score == 8 + 15 - 10


def test_an_order_with_the_typed_accession_on_the_study_day_ranks_first() -> None:
    p = f.patient()
    right = f.order(p, accession_number=AccessionNumber("ACC12345"))
    other = f.order(f.patient(), accession_number=AccessionNumber("ZZZ999"))
    got = f.received(p, accession="ACC12354")  # last two digits transposed
    ranked = rank_candidates(_held(got), [(other, None), (right, p)], [p])
    assert [c.kind for c in ranked] == [CandidateKind.ORDER, CandidateKind.PATIENT]
    assert ranked[0].order == right
    assert _codes(ranked[0].evidence) >= {
        "near_accession",
        "scheduled_same_day",
        "same_modality",
        "same_patient_id",
    }
    assert ranked[0].score > ranked[1].score


def test_an_accession_with_a_prefix_is_contained() -> None:
    p = f.patient()
    o = f.order(p, accession_number=AccessionNumber("ACC777"))
    c = score_order(_held(f.received(p, accession="TYPO-ACC777")), o, None)
    assert _codes(c.evidence) >= {"contained_accession"}


def test_the_orders_reserved_study_uid_counts_like_its_accession() -> None:
    p = f.patient()
    o = f.order(p)
    got = f.received(f.patient(), study_uid=o.study_instance_uid)
    assert "same_study_uid" in _codes(score_order(_held(got), o, p).evidence)


def test_dates_and_modalities_near_and_far() -> None:
    p = f.patient()
    o = f.order(p, scheduled_start=datetime(2026, 11, 29, 7, 0, tzinfo=UTC), modality="MR")
    codes = _codes(score_order(_held(f.received(p)), o, p).evidence)
    assert {"scheduled_next_day", "different_modality"} <= codes
    far = replace(o, scheduled_start=datetime(2026, 12, 5, tzinfo=UTC))
    assert not {"scheduled_same_day", "scheduled_next_day"} & _codes(
        score_order(_held(f.received(p)), far, p).evidence
    )


def test_cancelled_orders_and_weak_fits_are_left_out() -> None:
    p = f.patient("999111", family="X", given="Y", birth=None)
    cancelled = f.order(p, status=OrderStatus.CANCELLED)
    stranger = f.patient("555555", family="SOMEONE", given="ELSE", birth=date(1950, 1, 1))
    got = f.received(p)
    ranked = rank_candidates(_held(got), [(cancelled, p)], [stranger])
    assert ranked == []


def test_the_ranking_does_not_depend_on_the_order_candidates_come_in() -> None:
    p = f.patient()
    orders = [(f.order(p), p) for _ in range(5)] + [(f.order(f.patient()), None) for _ in range(5)]
    patients = [p, f.patient(), f.patient(family="DOE")]
    got = f.received(p)
    first = rank_candidates(_held(got), orders, patients, limit=20)
    shuffled = orders[:]
    random.Random(4).shuffle(shuffled)
    assert rank_candidates(_held(got), shuffled, list(reversed(patients)), limit=20) == first
    assert [c.score for c in first] == sorted((c.score for c in first), reverse=True)


def test_lookup_variants_cover_the_keying_errors() -> None:
    assert "124356" in typing_variants("123456")
    assert "42" in typing_variants("0042")
    assert typing_variants("") == ()
    assert date(1980, 7, 3) in birth_date_variants(date(1980, 3, 7))
    assert date(1908, 3, 7) in birth_date_variants(date(1980, 3, 7))
    assert birth_date_variants(None) == ()


# Property tests -------------------------------------------------------------------------

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
_id = st.text(alphabet="0123456789ABCDEFabc-^ ", max_size=12)
_dates = st.one_of(st.none(), st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 1, 1)))


@st.composite
def _patients(draw: st.DrawFn):
    ids = draw(st.lists(st.tuples(_id, st.sampled_from(["", "HOSP", "OTHER"])), min_size=1))
    return f.patient(
        draw(_id) or "P",
        family=draw(_text),
        given=draw(_text),
        birth=draw(_dates),
        sex=draw(st.sampled_from(["", "M", "F", "O"])),
        more=tuple(PatientIdentifier(PatientId(v), Issuer(i)) for v, i in ids),
    )


@st.composite
def _received(draw: st.DrawFn):
    return replace(
        f.received(None, accession=draw(_id)),
        patient=PatientIdentifier(
            PatientId(draw(_id)), Issuer(draw(st.sampled_from(["", "HOSP"])))
        ),
        demographics=Demographics(
            PersonName(family=draw(_text), given=draw(_text)),
            draw(_dates),
            draw(st.sampled_from(["", "M", "F"])),
        ),
    )


@given(_received(), _patients(), st.text(alphabet="ABC0123456789", max_size=10))
def test_scores_stay_between_0_and_100(received, patient, accession) -> None:
    held = _held(received)
    assert 0 <= score_patient(held, patient).score <= 100
    order = f.order(patient, accession_number=AccessionNumber(accession or "A"))
    assert 0 <= score_order(held, order, patient).score <= 100


@given(_patients())
def test_the_patients_own_identity_scores_at_least_as_well_as_any(patient) -> None:
    own = score_patient(_held(f.received(patient)), patient).score
    assert own == sum(e.points for e in identity_evidence(f.received(patient), patient))
    assert not any(e.points < 0 for e in identity_evidence(f.received(patient), patient))


@given(_received())
def test_empty_attributes_are_never_evidence(received) -> None:
    empty = f.patient("", family="", given="", birth=None, sex="")
    assert identity_evidence(received, empty) == ()


@given(st.text(alphabet="0123456789ABCDEF", min_size=2, max_size=16), st.data())
def test_a_transposition_is_one_edit_and_found_again(value, data) -> None:
    i = data.draw(st.integers(0, len(value) - 2))
    swapped = value[:i] + value[i + 1] + value[i] + value[i + 2 :]
    if swapped == value:
        assert edit_distance(value, swapped) == 0
        return
    assert edit_distance(value, swapped) == 1
    assert is_transposition(value, swapped)
    assert swapped in typing_variants(value)


@given(_text, _text)
def test_edit_distance_is_symmetric_and_zero_only_for_equal_texts(a, b) -> None:
    d = edit_distance(a, b)
    assert d == edit_distance(b, a)
    assert (d == 0) == (a == b)
    assert abs(len(a) - len(b)) <= d <= max(len(a), len(b))
    assert 0.0 <= similarity(a, b) <= 1.0


@given(st.dates(min_value=date(1901, 1, 1), max_value=date(2099, 12, 31)))
def test_birth_date_variants_are_real_dates_one_keying_error_away(day) -> None:
    variants = birth_date_variants(day)
    assert day in variants
    for v in variants:
        a, b = (f"{d.year:04d}{d.month:02d}{d.day:02d}" for d in (day, v))
        assert edit_distance(a, b) <= 1 or (v.month, v.day) == (day.day, day.month)
        assert v.year >= 1850


def test_min_score_keeps_a_name_and_birth_date_match() -> None:
    p = f.patient("ZZ", family="NOVAK", given="PETR")
    got = f.received(p, patient_id="QQ")
    assert score_patient(_held(got), p).score >= MIN_SCORE
