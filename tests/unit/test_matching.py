"""Matching an arriving study to its order and patient."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from pacsflow.domain.matching import (
    ExceptionReason,
    Held,
    Matched,
    MismatchSource,
    demographic_differences,
    match_study,
)
from pacsflow.domain.orders import OrderStatus
from pacsflow.domain.patients import Demographics, PersonName
from tests import factories as f


def _match(rec, order=None, by_uid=None, order_patient=None, received_patient=None):
    return match_study(
        rec,
        order_by_accession=order,
        order_by_study_uid=by_uid,
        order_patient=order_patient,
        received_patient=received_patient,
    )


def test_matches_order_by_accession_and_agreeing_patient():
    p = f.patient()
    o = f.order(p)
    outcome = _match(f.received(p, accession=o.accession_number), o, None, p, p)
    assert outcome == Matched(order=o, patient=p)


def test_matches_order_by_study_uid_when_accession_is_missing():
    p = f.patient()
    o = f.order(p)
    outcome = _match(f.received(p, study_uid=o.study_instance_uid), None, o, p, p)
    assert isinstance(outcome, Matched)


def test_no_accession_and_known_patient_is_an_unscheduled_study():
    p = f.patient()
    outcome = _match(f.received(p), received_patient=p)
    assert isinstance(outcome, Held)
    assert (outcome.reason, outcome.source) == (
        ExceptionReason.NO_ORDER,
        MismatchSource.MODALITY_ENTRY,
    )


def test_images_without_patient_id_are_held_even_when_the_order_matches():
    p = f.patient()
    o = f.order(p)
    outcome = _match(f.received(p, accession=o.accession_number, patient_id=""), o, None, p)
    assert isinstance(outcome, Held)
    assert (outcome.reason, outcome.source, outcome.order, outcome.patient) == (
        ExceptionReason.MISSING_PATIENT_ID,
        MismatchSource.MODALITY_ENTRY,
        o,
        p,
    )


def test_images_without_patient_id_or_order_are_held_for_the_missing_id():
    outcome = _match(f.received(None, patient_id=""))
    assert isinstance(outcome, Held)
    assert outcome.reason is ExceptionReason.MISSING_PATIENT_ID


def test_unknown_accession_points_at_scheduling():
    p = f.patient()
    outcome = _match(f.received(p, accession="NOPE1"), received_patient=p)
    assert isinstance(outcome, Held)
    assert (outcome.reason, outcome.source) == (
        ExceptionReason.UNKNOWN_ACCESSION,
        MismatchSource.SCHEDULING,
    )


def test_unknown_patient_without_order_points_at_registration():
    outcome = _match(f.received(None))
    assert isinstance(outcome, Held)
    assert (outcome.reason, outcome.source) == (
        ExceptionReason.UNKNOWN_PATIENT,
        MismatchSource.REGISTRATION,
    )


def test_other_patient_id_on_order_is_a_modality_entry_mismatch():
    p = f.patient("12345")
    o = f.order(p)
    outcome = _match(f.received(p, accession=o.accession_number, patient_id="99999"), o, None, p)
    assert isinstance(outcome, Held)
    assert outcome.reason is ExceptionReason.PATIENT_ORDER_MISMATCH
    assert outcome.source is MismatchSource.MODALITY_ENTRY
    assert outcome.order == o


def test_patient_id_differing_only_in_leading_zeros_is_interface_translation():
    p = f.patient("0012345")
    o = f.order(p)
    outcome = _match(f.received(p, accession=o.accession_number, patient_id="12345"), o, None, p)
    assert isinstance(outcome, Held)
    assert outcome.source is MismatchSource.INTERFACE_TRANSLATION


def test_missing_issuer_on_the_image_still_matches():
    p = f.patient("12345", issuer="HOSP")
    o = f.order(p)
    outcome = _match(f.received(p, accession=o.accession_number, issuer=""), o, None, p)
    assert isinstance(outcome, Matched)


def test_other_issuer_does_not_match():
    p = f.patient("12345", issuer="HOSP")
    o = f.order(p)
    outcome = _match(f.received(p, accession=o.accession_number, issuer="CLINIC"), o, None, p)
    assert isinstance(outcome, Held)
    assert outcome.reason is ExceptionReason.PATIENT_ORDER_MISMATCH


def test_different_birth_date_is_held_as_demographics_differ():
    p = f.patient(birth=date(1970, 1, 2))
    o = f.order(p)
    rec = f.received(p, accession=o.accession_number, birth=date(1970, 2, 1))
    outcome = _match(rec, o, None, p)
    assert isinstance(outcome, Held)
    assert outcome.reason is ExceptionReason.DEMOGRAPHICS_DIFFER
    assert outcome.source is MismatchSource.MODALITY_ENTRY
    assert "birth date" in outcome.detail


def test_upper_case_name_from_the_modality_is_not_a_difference():
    p = f.patient(family="Dvořák", given="Antonín")
    o = f.order(p)
    rec = f.received(p, accession=o.accession_number, family="DVOŘÁK", given="ANTONÍN")
    assert isinstance(_match(rec, o, None, p), Matched)


def test_name_that_lost_its_accents_is_interface_translation():
    p = f.patient(family="Dvořák", given="Antonín")
    o = f.order(p)
    rec = f.received(p, accession=o.accession_number, family="DVORAK", given="ANTONIN")
    outcome = _match(rec, o, None, p)
    assert isinstance(outcome, Held)
    assert outcome.source is MismatchSource.INTERFACE_TRANSLATION


def test_images_for_a_cancelled_order_are_held():
    p = f.patient()
    o = f.order(p, status=OrderStatus.CANCELLED)
    outcome = _match(f.received(p, accession=o.accession_number), o, None, p)
    assert isinstance(outcome, Held)
    assert outcome.reason is ExceptionReason.ORDER_NOT_SCHEDULED


def test_images_after_completion_still_match():
    p = f.patient()
    o = f.order(p, status=OrderStatus.COMPLETED)
    assert isinstance(_match(f.received(p, accession=o.accession_number), o, None, p), Matched)


def test_order_without_registered_patient_is_held_for_registration():
    p = f.patient()
    o = f.order(p)
    outcome = _match(f.received(p, accession=o.accession_number), o, None, None)
    assert isinstance(outcome, Held)
    assert outcome.source is MismatchSource.REGISTRATION


names = st.text(alphabet=st.characters(categories=["L"]), min_size=1, max_size=12)


@given(family=names, given_name=names)
def test_demographics_never_differ_from_themselves(family, given_name):
    d = Demographics(PersonName(family, given_name), date(2000, 1, 1), "M")
    assert demographic_differences(d, d) == ()
    assert demographic_differences(d, d, folded=True) == ()


@given(family=names)
def test_empty_fields_from_the_modality_are_never_differences(family):
    registered = Demographics(PersonName(family, "X"), date(2000, 1, 1), "M")
    assert demographic_differences(Demographics(), registered) == ()
