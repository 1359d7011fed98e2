"""Correcting identifiers and splitting a series off: matched again, audited, undone exactly."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pacsflow.adapters.db.audit import audit_records
from pacsflow.adapters.db.tables import exceptions, match_events, reconciliation_actions
from pacsflow.domain import commands as cmd
from pacsflow.domain.audit import ActiveParticipant, AuditSource
from pacsflow.domain.errors import ConflictingState, InvalidInput
from pacsflow.domain.events import StudyPublished
from pacsflow.domain.exception_queue import (
    CORRECT,
    CORRECT_HELD,
    SPLIT,
    ActionFact,
    ExceptionHistory,
    resolution_as_of,
)
from pacsflow.domain.matching import ExceptionReason, MismatchSource, ReceivedIdentity
from pacsflow.domain.patients import Patient
from pacsflow.domain.rejections import RejectedInstance, Rejection, RejectionReason
from pacsflow.domain.reports import Report, ReportStatus
from pacsflow.domain.studies import StudyFilter, StudyState
from pacsflow.domain.uids import Uid, new_uid
from pacsflow.workflow.events import EventBus
from pacsflow.workflow.queries import MergedIdQueries, Queries
from pacsflow.workflow.reconciliation import UNDONE, Correction, Reconciliation
from tests import factories as f
from tests.fakes import FixedClock, InMemoryBlobStore
from tests.unit.test_late_matching import World

ME = ActiveParticipant("rita", is_requestor=True)


@pytest.fixture
def w(tmp_path: Path) -> World:
    return World(tmp_path)


def _rec(w: World, published: list[str] | None = None) -> Reconciliation:
    events = EventBus()
    if published is not None:
        events.subscribe(
            StudyPublished, lambda _uow, done: published.extend(e.study_uid for e in done)
        )
    return Reconciliation(w.uow, FixedClock(), AuditSource("PACSFLOW"), events)


def _series(w: World, rec: ReceivedIdentity, instances: int = 1) -> Uid:
    """Store one series of `instances` instances in the study of rec; its UID."""
    series = new_uid()
    for _ in range(instances):
        arrived = f.arrived(rec, series_instance_uid=series)
        src = w.tmp / f"{arrived.instance.sop_instance_uid}.dcm"
        src.write_bytes(b"x")
        w.ingest.receive(arrived, src)
    return series


def _scheduled(w: World, p: Patient | None = None) -> tuple[Patient, Any]:
    p = p or f.patient()
    o = f.order(p)
    w.apply(cmd.PlaceOrder(o, p))
    return p, o


def _study(w: World, uid: str) -> Any:
    view = w.queries.study(Uid(uid))
    assert view is not None
    return view.study


def _snapshot(w: World) -> dict[str, Any]:
    """Everything a study is in the index: records, instances, exceptions (field by field)."""
    studies = w.queries.studies(StudyFilter(is_published_only=False, limit=10_000))
    instances = w.queries.instances(is_published_only=False)
    return {
        "studies": sorted(
            (asdict(v.study) for v in studies), key=lambda s: s["study_instance_uid"]
        ),
        "patients": {v.study.study_instance_uid: v.patient for v in studies},
        "instances": sorted(
            (i.sop_instance_uid, i.study_instance_uid, i.series_instance_uid) for i in instances
        ),
        "exceptions": sorted(
            (tuple(r._mapping.items()) for r in w.rows(exceptions)), key=lambda r: r[0][1]
        ),
    }


def _assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    for key in before:
        if key == "studies":
            assert len(after[key]) == len(before[key])
            for was, now in zip(before[key], after[key], strict=True):
                for field, value in was.items():
                    assert now[field] == value, (now["study_instance_uid"], field)
        else:
            assert after[key] == before[key], key


# --- correct identifiers ---------------------------------------------------------------------


def test_correcting_a_mistyped_accession_publishes_under_the_order(w: World) -> None:
    p, o = _scheduled(w)
    rec = f.received(p, accession=o.accession_number + "X")
    _series(w, rec)
    [exc] = w.queries.exceptions()
    assert exc.reason is ExceptionReason.UNKNOWN_ACCESSION
    published: list[str] = []
    done = _rec(w, published).correct(exc.id, Correction(accession_number=o.accession_number), ME)
    assert done.state is StudyState.PUBLISHED
    study = _study(w, rec.study_instance_uid)
    assert (study.patient, study.accession_number) == (p.primary, o.accession_number)
    assert study.received == rec  # what the modality sent stays on record
    assert published == [rec.study_instance_uid]  # routing, prefetch, reports start now
    [closed] = w.rows(exceptions)
    assert closed.resolution == CORRECT
    assert [r.kind for r in w.rows(match_events)] == ["held", "reconciled"]


def test_a_correction_that_still_does_not_match_keeps_the_exception_for_the_new_reason(
    w: World,
) -> None:
    p, _ = _scheduled(w)
    q, other = _scheduled(w, f.patient(family="ROE", given="RICHARD"))
    rec = f.received(p, accession="TYPO")
    _series(w, rec)
    [exc] = w.queries.exceptions()
    done = _rec(w).correct(exc.id, Correction(accession_number=other.accession_number), ME)
    assert done.state is StudyState.HELD
    [now] = w.queries.exceptions()
    assert now.id == exc.id
    assert now.opened_at == exc.opened_at
    assert now.reason is ExceptionReason.PATIENT_ORDER_MISMATCH
    assert now.received.accession_number == other.accession_number
    assert now.candidate_order == other.accession_number
    study = _study(w, rec.study_instance_uid)
    assert (study.state, study.patient) == (StudyState.HELD, q.primary)  # as ingest holds it
    [action] = w.rows(reconciliation_actions)
    assert action.action == CORRECT_HELD


def test_a_corrected_accession_is_matched_late_when_its_order_arrives(w: World) -> None:
    p = f.patient()
    w.apply(cmd.RegisterPatient(p))
    rec = f.received(p, accession="A-TYPO")
    _series(w, rec)
    [exc] = w.queries.exceptions()
    o = f.order(p)
    _rec(w).correct(exc.id, Correction(accession_number=o.accession_number), ME)
    assert w.published() == []
    w.apply(cmd.PlaceOrder(o, p))
    assert w.published() == [rec.study_instance_uid]
    assert w.rows(exceptions)[0].resolution == "late_match"


def test_correcting_the_patient_id_matches_against_that_patient(w: World) -> None:
    p, o = _scheduled(w)
    rec = f.received(p, accession=o.accession_number, patient_id="P-TYPO")
    _series(w, rec)
    [exc] = w.queries.exceptions()
    assert exc.reason is ExceptionReason.PATIENT_ORDER_MISMATCH
    done = _rec(w).correct(exc.id, Correction(patient_id=p.primary.value), ME)
    assert done.state is StudyState.PUBLISHED
    [view] = w.queries.studies(StudyFilter(patient=p.primary))
    assert view.patient == p


@pytest.mark.parametrize("outcome", ["published", "held"])
def test_undoing_a_correction_of_a_held_study_restores_it_exactly(w: World, outcome: str) -> None:
    p, o = _scheduled(w)
    _q, other = _scheduled(w, f.patient(family="ROE", given="RICHARD"))
    rec = f.received(p, accession="TYPO")
    _series(w, rec, instances=2)
    [exc] = w.queries.exceptions()
    before = _snapshot(w)
    accession = o.accession_number if outcome == "published" else other.accession_number
    done = _rec(w).correct(exc.id, Correction(accession_number=accession), ME)
    assert done.state.value == outcome
    assert _snapshot(w) != before
    assert _rec(w).undo(done.action_id, ME) is StudyState.HELD
    _assert_same(before, _snapshot(w))
    with pytest.raises(ConflictingState):
        _rec(w).undo(done.action_id, ME)


def test_a_published_study_corrected_to_another_order_of_its_patient_stays_published(
    w: World,
) -> None:
    p, o = _scheduled(w)
    o2 = f.order(p)
    w.apply(cmd.PlaceOrder(o2, p))
    rec = f.received(p, accession=o.accession_number)
    _series(w, rec)
    assert w.published() == [rec.study_instance_uid]
    before = _snapshot(w)
    done = _rec(w).correct_study(
        rec.study_instance_uid, Correction(accession_number=o2.accession_number), ME
    )
    assert done.state is StudyState.PUBLISHED
    assert _study(w, rec.study_instance_uid).accession_number == o2.accession_number
    assert w.queries.exceptions() == []
    [action] = w.rows(reconciliation_actions)
    assert (action.action, action.exception_pk) == (CORRECT, None)
    _rec(w).undo(done.action_id, ME)
    _assert_same(before, _snapshot(w))


def test_a_published_study_corrected_to_an_unmatched_patient_is_held_and_undo_publishes_it(
    w: World,
) -> None:
    p, o = _scheduled(w)
    q = f.patient(family="ROE", given="RICHARD")
    w.apply(cmd.RegisterPatient(q))
    rec = f.received(p, accession=o.accession_number)
    _series(w, rec)
    before = _snapshot(w)
    done = _rec(w).correct_study(rec.study_instance_uid, Correction(patient_id=q.primary.value), ME)
    assert done.state is StudyState.HELD
    assert w.published() == []
    [opened] = w.queries.exceptions()
    assert opened.reason is ExceptionReason.PATIENT_ORDER_MISMATCH
    assert opened.received.patient == q.primary
    assert _rec(w).undo(done.action_id, ME) is StudyState.PUBLISHED
    assert w.queries.exceptions() == []
    after = _snapshot(w)
    [closed] = w.rows(exceptions)  # kept for the history, closed by the undo
    assert (closed.pk, closed.resolution) == (opened.id, UNDONE)
    after["exceptions"] = []
    _assert_same(before, after)


def test_corrections_that_change_nothing_or_cannot_be_kept_are_refused(w: World) -> None:
    p, _o = _scheduled(w)
    rec = f.received(p, accession="TYPO")
    _series(w, rec)
    [exc] = w.queries.exceptions()
    rc = _rec(w)
    for bad in (
        Correction(),
        Correction(accession_number="TYPO"),
        Correction(patient_id=" "),
        Correction(accession_number="A\\B"),
        Correction(issuer="x" * 65),
        Correction(patient_id="bad\nid"),
    ):
        with pytest.raises(InvalidInput):
            rc.correct(exc.id, bad, ME)
    with pytest.raises(InvalidInput):
        rc.correct_study("1.2.3.4", Correction(accession_number="A"), ME)
    with pytest.raises(InvalidInput):
        rc.correct_study("not a uid", Correction(accession_number="A"), ME)
    rc.reject(exc.id, "test image", ME)
    with pytest.raises(ConflictingState):
        rc.correct_study(rec.study_instance_uid, Correction(accession_number="A"), ME)
    assert len(w.rows(reconciliation_actions)) == 1


def test_an_earlier_correction_is_undone_only_after_the_later_action(w: World) -> None:
    p, o = _scheduled(w)
    rec = f.received(p, accession="TYPO")
    _series(w, rec)
    [exc] = w.queries.exceptions()
    rc = _rec(w)
    first = rc.correct(exc.id, Correction(accession_number="STILL-WRONG"), ME)
    second = rc.correct(exc.id, Correction(accession_number=o.accession_number), ME)
    with pytest.raises(ConflictingState, match="undo it first"):
        rc.undo(first.action_id, ME)
    rc.undo(second.action_id, ME)
    rc.undo(first.action_id, ME)
    [back] = w.queries.exceptions()
    assert (back.reason, back.received.accession_number) == (exc.reason, "TYPO")


def test_a_correction_is_not_undone_once_a_late_match_resolved_what_it_left_open(
    w: World,
) -> None:
    p = f.patient()
    w.apply(cmd.RegisterPatient(p))
    rec = f.received(p, accession="A-TYPO")
    _series(w, rec)
    [exc] = w.queries.exceptions()
    o = f.order(p)
    rc = _rec(w)
    held = rc.correct(exc.id, Correction(accession_number=o.accession_number), ME)
    w.apply(cmd.PlaceOrder(o, p))  # late match: no action, the exception is resolved
    with pytest.raises(ConflictingState, match="resolved since"):
        rc.undo(held.action_id, ME)
    # A published study held by a correction: the exception it opened is resolved late too.
    o2, o3 = f.order(p), f.order(p)
    w.apply(cmd.PlaceOrder(o2, p))
    rec2 = f.received(p, accession=o2.accession_number)
    _series(w, rec2)
    opened = rc.correct_study(
        rec2.study_instance_uid, Correction(accession_number=o3.accession_number), ME
    )
    assert opened.state is StudyState.HELD
    w.apply(cmd.PlaceOrder(o3, p))
    assert rec2.study_instance_uid in w.published()
    with pytest.raises(ConflictingState, match="opened was resolved since"):
        rc.undo(opened.action_id, ME)


def test_undo_of_a_correction_checks_its_exception_is_still_resolved(w: World) -> None:
    p, o = _scheduled(w)
    rec = f.received(p, accession="TYPO")
    _series(w, rec)
    [exc] = w.queries.exceptions()
    rc = _rec(w)
    done = rc.correct(exc.id, Correction(accession_number=o.accession_number), ME)
    with w.uow() as uow:  # reopened behind reconciliation's back
        uow.exceptions.reopen(exc.id)
        uow.commit()
    with pytest.raises(ConflictingState, match="reopened since"):
        rc.undo(done.action_id, ME)


def test_a_held_study_without_an_open_exception_is_corrected_from_its_received_identity(
    w: World,
) -> None:
    rec = f.received(None, accession="")  # nobody registered: held, belonging to nobody
    _series(w, rec)
    [exc] = w.queries.exceptions()
    with w.uow() as uow:  # closed elsewhere (as IOCM does for a study left empty)
        uow.exceptions.resolve(exc.id, FixedClock().now(), "iocm_rejection")
        uow.commit()
    p, o = _scheduled(w)
    done = _rec(w).correct_study(
        rec.study_instance_uid,
        Correction(patient_id=p.primary.value, accession_number=o.accession_number),
        ME,
    )
    # The images' own demographics (ROE) are compared with the patient named: still held.
    assert done.state is StudyState.HELD
    [opened] = w.queries.exceptions()
    assert opened.reason is ExceptionReason.DEMOGRAPHICS_DIFFER
    assert opened.received.patient == p.primary


def test_corrections_and_splits_are_audited(w: World) -> None:
    p, o = _scheduled(w)
    rec = f.received(p, accession=o.accession_number)
    _series(w, rec)
    series = _series(w, rec)
    rc = _rec(w)
    done = rc.split(rec.study_instance_uid, series, ME)
    rc.undo(done.action_id, ME)
    rc.correct_study(rec.study_instance_uid, Correction(issuer="OTHER"), ME)
    with w.uow.engine.connect() as conn:
        rows = conn.execute(
            sa.select(audit_records.c.user_id).where(audit_records.c.event_id == "110103")
        ).all()
    assert [r[0] for r in rows] == ["rita"] * 3


# --- split ------------------------------------------------------------------------------------


def test_a_split_moves_one_series_to_a_new_study_of_the_same_patient(w: World) -> None:
    p, o = _scheduled(w)
    rec = f.received(p, accession=o.accession_number)
    keep = _series(w, rec, instances=2)
    moved = _series(w, rec, instances=3)
    published: list[str] = []
    done = _rec(w, published).split(rec.study_instance_uid, moved, ME)
    assert (done.state, done.target_state) == (StudyState.PUBLISHED, StudyState.PUBLISHED)
    new = done.target_study_uid
    assert new.startswith("2.25.")
    assert new != rec.study_instance_uid
    source, target = _study(w, rec.study_instance_uid), _study(w, new)
    assert (source.series_count, source.instance_count) == (1, 2)
    assert (target.series_count, target.instance_count) == (1, 3)
    assert (target.patient, target.accession_number) == (p.primary, o.accession_number)
    # What the modality sent, and when it arrived, go with the series.
    assert target.received == replace(source.received, study_instance_uid=new)
    assert target.received_at == source.received_at
    found = {v.study.study_instance_uid for v in w.queries.studies(StudyFilter(patient=p.primary))}
    assert found == {rec.study_instance_uid, new}
    assert {i.series_instance_uid for i in w.queries.instances(study_uids=[new])} == {moved}
    assert {
        i.series_instance_uid for i in w.queries.instances(study_uids=[rec.study_instance_uid])
    } == {keep}
    assert published == [new]
    [action] = w.rows(reconciliation_actions)
    assert (action.action, action.series_instance_uid, action.target_study_uid) == (
        SPLIT,
        moved,
        new,
    )
    assert action.is_new_target


def test_a_series_split_off_with_its_own_accession_is_published_under_that_order(
    w: World,
) -> None:
    p, o = _scheduled(w)
    o2 = f.order(p, modality="MR")
    w.apply(cmd.PlaceOrder(o2, p))
    rec = f.received(p, accession=o.accession_number)
    _series(w, rec)
    mr = _series(w, rec)
    done = _rec(w).split(
        rec.study_instance_uid, mr, ME, correction=Correction(accession_number=o2.accession_number)
    )
    assert done.target_state is StudyState.PUBLISHED
    assert _study(w, done.target_study_uid).accession_number == o2.accession_number


def test_a_series_of_another_patient_split_off_a_held_study_is_matched_on_its_own(
    w: World,
) -> None:
    p, o = _scheduled(w)
    q, oq = _scheduled(w, f.patient(family="ROE", given="RICHARD"))
    rec = f.received(p, accession=o.accession_number)
    _series(w, rec)
    # A second series carrying another patient and accession: the study is inconsistent.
    stray = _series(
        w, f.received(q, accession=oq.accession_number, study_uid=rec.study_instance_uid)
    )
    [exc] = w.queries.exceptions()
    assert exc.reason is ExceptionReason.STUDY_INCONSISTENT
    done = _rec(w).split(
        rec.study_instance_uid,
        stray,
        ME,
        correction=Correction(patient_id=q.primary.value, accession_number=oq.accession_number),
    )
    # Matched like a new arrival; the names and birth date are those the held study's
    # exception recorded (the disagreeing instance's), which agree with that patient.
    assert done.target_state is StudyState.PUBLISHED
    [view] = w.queries.studies(StudyFilter(patient=q.primary))
    assert view.study.study_instance_uid == done.target_study_uid
    assert view.study.accession_number == oq.accession_number
    # The source keeps its exception: a person decides it (match, assign, correct).
    assert done.state is StudyState.HELD
    assert [e.id for e in w.queries.exceptions()] == [exc.id]


def test_a_split_to_an_unregistered_patient_holds_the_new_study(w: World) -> None:
    p, o = _scheduled(w)
    rec = f.received(p, accession=o.accession_number)
    _series(w, rec)
    moved = _series(w, rec)
    done = _rec(w).split(
        rec.study_instance_uid,
        moved,
        ME,
        correction=Correction(patient_id="NOBODY", accession_number=""),
    )
    assert done.target_state is StudyState.HELD
    [held] = w.queries.exceptions()
    assert (held.study_instance_uid, held.reason) == (
        done.target_study_uid,
        ExceptionReason.UNKNOWN_PATIENT,
    )
    assert held.source is MismatchSource.REGISTRATION
    assert w.published() == [rec.study_instance_uid]


def test_a_split_to_an_existing_study_of_another_patient(w: World) -> None:
    p, o = _scheduled(w)
    q, oq = _scheduled(w, f.patient(family="ROE", given="RICHARD"))
    rec = f.received(p, accession=o.accession_number)
    _series(w, rec)
    moved = _series(w, rec, instances=2)
    other = f.received(q, accession=oq.accession_number)
    _series(w, other)
    done = _rec(w).split(
        rec.study_instance_uid, moved, ME, target_study_uid=other.study_instance_uid
    )
    assert done.target_study_uid == other.study_instance_uid
    target = _study(w, other.study_instance_uid)
    assert (target.series_count, target.instance_count, target.patient) == (2, 3, q.primary)
    [q_view] = w.queries.studies(StudyFilter(patient=q.primary))
    assert q_view.study.instance_count == 3


def test_splits_that_cannot_be_done_are_refused(w: World) -> None:
    p, o = _scheduled(w)
    rec = f.received(p, accession=o.accession_number)
    only = _series(w, rec)
    other = f.received(p, accession=o.accession_number)
    elsewhere = _series(w, other)
    rc = _rec(w)
    uid = rec.study_instance_uid
    with pytest.raises(ConflictingState, match="correct the study instead"):
        rc.split(uid, only, ME)  # nothing would be left
    second = _series(w, rec)
    with pytest.raises(InvalidInput):
        rc.split(uid, elsewhere, ME)  # not a series of this study
    with pytest.raises(InvalidInput):
        rc.split(uid, new_uid(), ME)
    with pytest.raises(InvalidInput):
        rc.split(uid, second, ME, target_study_uid=uid)
    with pytest.raises(InvalidInput):
        rc.split(uid, second, ME, target_study_uid=new_uid())  # no such study
    with pytest.raises(InvalidInput):
        rc.split(
            uid,
            second,
            ME,
            target_study_uid=other.study_instance_uid,
            correction=Correction(accession_number="X"),
        )
    assert w.rows(reconciliation_actions) == []


def _reject(w: World, study: str, series: Uid, *sops: tuple[Uid, Uid]) -> None:
    with w.uow() as uow:
        uow.studies.reject(
            Rejection(
                RejectionReason.QUALITY,
                new_uid(),
                tuple(RejectedInstance(Uid(study), series, sop, cls) for sop, cls in sops),
            ),
            FixedClock().now(),
        )
        uow.commit()


def test_a_series_whose_instances_were_all_rejected_is_not_split_off(w: World) -> None:
    p, o = _scheduled(w)
    rec = f.received(p, accession=o.accession_number)
    _series(w, rec)
    gone = _series(w, rec)
    [inst] = w.queries.instances(series_uids=[gone])
    _reject(w, rec.study_instance_uid, gone, (inst.sop_instance_uid, inst.sop_class_uid))
    with pytest.raises(InvalidInput, match="no visible instance"):
        _rec(w).split(rec.study_instance_uid, gone, ME)


def test_a_split_is_not_undone_when_its_series_was_moved_elsewhere(w: World) -> None:
    p, o = _scheduled(w)
    rec = f.received(p, accession=o.accession_number)
    _series(w, rec)
    moved = _series(w, rec)
    other = f.received(p, accession=o.accession_number)
    _series(w, other)
    rc = _rec(w)
    done = rc.split(rec.study_instance_uid, moved, ME)
    with w.uow() as uow:  # not through an action (which undo would see first)
        uow.studies.move_series(moved, other.study_instance_uid)
        uow.commit()
    with pytest.raises(ConflictingState, match="no longer in study"):
        rc.undo(done.action_id, ME)


def test_rejections_follow_the_series_they_belong_to(w: World) -> None:
    p, o = _scheduled(w)
    rec = f.received(p, accession=o.accession_number)
    _series(w, rec)
    moved = _series(w, rec, instances=2)
    [first, _] = w.queries.instances(series_uids=[moved])
    _reject(w, rec.study_instance_uid, moved, (first.sop_instance_uid, first.sop_class_uid))
    done = _rec(w).split(rec.study_instance_uid, moved, ME)
    with w.uow(read_only=True) as uow:
        rejected = uow.studies.rejection(first.sop_instance_uid)
    assert rejected is not None
    assert rejected.study_instance_uid == done.target_study_uid
    assert _study(w, done.target_study_uid).instance_count == 1
    _rec(w).undo(done.action_id, ME)
    with w.uow(read_only=True) as uow:
        back = uow.studies.rejection(first.sop_instance_uid)
    assert back is not None
    assert back.study_instance_uid == rec.study_instance_uid


def test_undoing_a_split_into_a_new_study_takes_that_study_away_again(w: World) -> None:
    p, _o = _scheduled(w)
    rec = f.received(p, accession="TYPO")  # held: the new study gets its own exception
    _series(w, rec)
    moved = _series(w, rec, instances=2)
    before = _snapshot(w)
    rc = _rec(w)
    done = rc.split(rec.study_instance_uid, moved, ME)
    assert done.target_state is StudyState.HELD
    assert len(w.queries.exceptions()) == 2
    assert rc.undo(done.action_id, ME) is StudyState.HELD
    _assert_same(before, _snapshot(w))
    assert w.queries.study(done.target_study_uid) is None


def test_a_split_is_undone_only_after_what_was_done_to_the_new_study(w: World) -> None:
    p, o = _scheduled(w)
    rec = f.received(p, accession="TYPO")
    _series(w, rec)
    moved = _series(w, rec)
    [source_exc] = w.queries.exceptions()
    before = _snapshot(w)
    rc = _rec(w)
    done = rc.split(rec.study_instance_uid, moved, ME)
    [target_exc] = [
        e for e in w.queries.exceptions() if e.study_instance_uid == done.target_study_uid
    ]
    matched = rc.match_to_order(target_exc.id, o.accession_number, ME)
    with pytest.raises(ConflictingState, match="undo it first"):
        rc.undo(done.action_id, ME)
    rc.undo(matched.action_id, ME)
    assert rc.undo(done.action_id, ME) is StudyState.HELD
    assert _snapshot(w)["instances"] == before["instances"]
    # The new study's exception has an action on record: the study stays, empty, its
    # exception closed; nothing clinical shows it.
    kept = w.queries.study(done.target_study_uid)
    assert kept is not None
    assert (kept.study.series_count, kept.study.instance_count) == (0, 0)
    assert w.queries.studies(StudyFilter()) == []
    assert [e.id for e in w.queries.exceptions()] == [source_exc.id]
    [closed] = [r for r in w.rows(exceptions) if r.pk == target_exc.id]
    assert closed.resolution == UNDONE


def test_a_new_study_with_a_report_attached_stays_when_its_split_is_undone(w: World) -> None:
    p, o = _scheduled(w)
    rec = f.received(p, accession=o.accession_number)
    _series(w, rec)
    moved = _series(w, rec)
    rc = _rec(w)
    done = rc.split(rec.study_instance_uid, moved, ME)
    new = done.target_study_uid
    report = Report("", ReportStatus.FINAL, "no acute findings", study_instance_uid=new)
    with w.uow() as uow:
        uow.reports.attach(uow.reports.add(report, FixedClock().now(), "test"), new)
        uow.commit()
    assert rc.undo(done.action_id, ME) is StudyState.PUBLISHED
    kept = w.queries.study(new)
    assert kept is not None
    assert kept.study.instance_count == 0
    assert w.published() == [rec.study_instance_uid]
    assert _study(w, rec.study_instance_uid).series_count == 2


def test_undoing_a_split_into_an_existing_study_moves_the_series_back(w: World) -> None:
    p, o = _scheduled(w)
    rec = f.received(p, accession=o.accession_number)
    _series(w, rec)
    moved = _series(w, rec)
    other = f.received(p, accession=o.accession_number)
    _series(w, other)
    before = _snapshot(w)
    rc = _rec(w)
    done = rc.split(rec.study_instance_uid, moved, ME, target_study_uid=other.study_instance_uid)
    assert rc.undo(done.action_id, ME) is StudyState.PUBLISHED
    _assert_same(before, _snapshot(w))


def test_a_correction_after_a_split_is_undone_first(w: World) -> None:
    p, o = _scheduled(w)
    rec = f.received(p, accession=o.accession_number)
    _series(w, rec)
    moved = _series(w, rec)
    rc = _rec(w)
    done = rc.split(rec.study_instance_uid, moved, ME)
    fixed = rc.correct_study(done.target_study_uid, Correction(issuer="CLINIC"), ME)
    with pytest.raises(ConflictingState, match="undo it first"):
        rc.undo(done.action_id, ME)
    rc.undo(fixed.action_id, ME)
    rc.undo(done.action_id, ME)
    assert w.queries.study(done.target_study_uid) is None


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=3), min_size=2, max_size=5),
    pick=st.integers(min_value=0, max_value=4),
    is_held=st.booleans(),
    target=st.sampled_from(["new", "existing", "new-other-accession", "new-unknown-patient"]),
)
def test_split_then_undo_leaves_the_index_as_it_was(
    tmp_path: Path, sizes: list[int], pick: int, is_held: bool, target: str
) -> None:
    w = World(tmp_path)
    p, o = _scheduled(w)
    o2 = f.order(p)
    w.apply(cmd.PlaceOrder(o2, p))
    rec = f.received(p, accession="TYPO" if is_held else o.accession_number)
    series = [_series(w, rec, instances=n) for n in sizes]
    other = f.received(p, accession=o2.accession_number)
    _series(w, other)
    before = _snapshot(w)
    kw: dict[str, Any] = {}
    if target == "existing":
        kw["target_study_uid"] = other.study_instance_uid
    elif target == "new-other-accession":
        kw["correction"] = Correction(accession_number=o2.accession_number)
    elif target == "new-unknown-patient":
        kw["correction"] = Correction(patient_id="NOBODY")
    rc = _rec(w)
    done = rc.split(rec.study_instance_uid, series[pick % len(series)], ME, **kw)
    moved = _snapshot(w)
    assert sum(s["instance_count"] for s in moved["studies"]) == sum(sizes) + 1
    rc.undo(done.action_id, ME)
    _assert_same(before, _snapshot(w))


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    is_held=st.booleans(),
    patient=st.sampled_from([None, "own", "other", "nobody"]),
    accession=st.sampled_from([None, "own", "other", "none", "typo"]),
    issuer=st.sampled_from([None, "", "HOSP", "CLINIC"]),
)
def test_correct_then_undo_leaves_the_index_as_it_was(
    tmp_path: Path, is_held: bool, patient: str | None, accession: str | None, issuer: str | None
) -> None:
    w = World(tmp_path)
    p, o = _scheduled(w)
    q, oq = _scheduled(w, f.patient(family="ROE", given="RICHARD"))
    rec = f.received(p, accession="TYPO" if is_held else o.accession_number)
    _series(w, rec, instances=2)
    patient_ids = {"own": p.primary.value, "other": q.primary.value, "nobody": "NOBODY"}
    accessions = {"own": o.accession_number, "other": oq.accession_number, "none": "", "typo": "X"}
    correction = Correction(patient_ids.get(patient or ""), issuer, accessions.get(accession or ""))
    before = _snapshot(w)
    rc = _rec(w)
    try:
        done = rc.correct_study(rec.study_instance_uid, correction, ME)
    except InvalidInput:
        assert _snapshot(w) == before  # nothing to correct: nothing changed
        return
    rc.undo(done.action_id, ME)
    after = _snapshot(w)
    undone = [r for r in w.rows(exceptions) if r.resolution == UNDONE]
    if undone:  # a published study held by the correction: its exception stays, closed
        assert not is_held
        after["exceptions"] = [e for e in after["exceptions"] if dict(e)["resolution"] != UNDONE]
    _assert_same(before, after)


def test_only_resolving_actions_resolve_an_exception_in_the_report() -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 11, 28, 8, tzinfo=UTC)
    history = ExceptionHistory(
        1,
        ExceptionReason.UNKNOWN_ACCESSION,
        MismatchSource.SCHEDULING,
        t0,
        actions=(ActionFact(CORRECT_HELD, t0), ActionFact(SPLIT, t0)),
    )
    later = t0 + timedelta(hours=1)
    assert resolution_as_of(history, later) is None
    resolved = ExceptionHistory(
        1,
        ExceptionReason.UNKNOWN_ACCESSION,
        MismatchSource.SCHEDULING,
        t0,
        actions=(ActionFact(CORRECT, t0),),
    )
    assert resolution_as_of(resolved, later) == (t0, CORRECT)


# --- queries by an identifier merged away ------------------------------------------------------


@pytest.mark.parametrize("mode", list(MergedIdQueries))
def test_queries_by_a_merged_identifier_find_nothing_or_the_survivor_as_configured(
    w: World, mode: MergedIdQueries
) -> None:
    old, survivor = f.patient("OLD-M1"), f.patient("NEW-M1")
    o = f.order(old)
    w.apply(cmd.RegisterPatient(survivor), cmd.PlaceOrder(o, old))
    rec = f.received(old, accession=o.accession_number)
    _series(w, rec)
    w.apply(cmd.MergePatients(survivor, (old.primary,)))
    queries = Queries(w.uow, InMemoryBlobStore(), mode)
    by_old = queries.studies(StudyFilter(patient=old.primary))
    as_queried = queries.patient_as_queried(old.primary)
    if mode is MergedIdQueries.NOTHING:
        assert by_old == []
        assert as_queried is None
    else:
        assert [v.study.study_instance_uid for v in by_old] == [rec.study_instance_uid]
        assert by_old[0].patient is not None
        assert by_old[0].patient.primary == survivor.primary
        assert as_queried is not None
        assert as_queried.primary == survivor.primary
    # Identity resolution itself always follows the merge; the survivor's own ID finds all.
    resolved = queries.patient(old.primary)
    assert resolved is not None
    assert resolved.primary == survivor.primary
    assert len(queries.studies(StudyFilter(patient=survivor.primary))) == 1
    assert queries.patient_as_queried(survivor.primary) == resolved
