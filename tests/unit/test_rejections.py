"""IOCM rejection notes through ingest: hidden, kept, refused when sent again, audited."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from pacsflow.domain import commands as cmd
from pacsflow.domain.audit import Action, AuditEvent, AuditSource, EventId, ObjectKind
from pacsflow.domain.audit_chain import from_canonical
from pacsflow.domain.errors import InstanceRejected
from pacsflow.domain.events import InstanceStored
from pacsflow.domain.matching import ExceptionReason, ReceivedIdentity
from pacsflow.domain.orders import Order
from pacsflow.domain.patients import Patient
from pacsflow.domain.rejections import (
    RejectedInstance,
    Rejection,
    RejectionReason,
    reason_for,
)
from pacsflow.domain.studies import ArrivedInstance, StudyFilter, StudyState
from pacsflow.domain.uids import Uid, new_uid
from pacsflow.workflow.audit import AuditTrail
from pacsflow.workflow.events import EventBus
from pacsflow.workflow.ingest import Ingest, IngestResult, IngestStatus
from pacsflow.workflow.intake import Intake
from pacsflow.workflow.ports.uow import UnitOfWork
from pacsflow.workflow.queries import Queries
from pacsflow.workflow.rejections import RESOLVED_BY_REJECTION
from tests import factories as f
from tests.fakes import FixedClock, InMemoryBlobStore, memory_uow
from tests.receiving import receive

KOS = Uid("1.2.840.10008.5.1.4.1.1.88.59")


class Env:
    """Ingest over an in-memory index, with a hook that records what it was called for."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.uow = memory_uow()
        self.clock = FixedClock()
        self.blobs = InMemoryBlobStore()
        self.hooked: list[Uid] = []
        self.intake = Intake(self.uow, self.clock)
        events = EventBus()
        events.subscribe(InstanceStored, self._hook)
        self.ingest = Ingest(self.uow, self.blobs, self.clock, events)
        self.queries = Queries(self.uow, self.blobs)

    def _hook(self, uow: UnitOfWork, stored: Sequence[InstanceStored]) -> None:
        self.hooked.extend(e.stored.instance.sop_instance_uid for e in stored)

    def place(self, p: Patient, **overrides: object) -> Order:
        o = f.order(p, **overrides)
        receive(self.intake, cmd.PlaceOrder(o, p))
        return o

    def store(self, arrived: ArrivedInstance) -> IngestResult:
        src = self.tmp_path / f"{arrived.instance.sop_instance_uid}.dcm"
        src.write_bytes(b"DICM" + arrived.instance.sop_instance_uid.encode())
        return self.ingest.receive(arrived, src)

    def study(self, identity: ReceivedIdentity, n: int) -> list[ArrivedInstance]:
        series = new_uid()
        images = [f.arrived(identity, series_instance_uid=series) for _ in range(n)]
        for image in images:
            assert self.store(image).status is IngestStatus.STORED
        return images

    def visible(self, study_uid: Uid) -> list[Uid]:
        return [
            i.sop_instance_uid
            for i in self.queries.instances(study_uids=[study_uid], is_published_only=False)
        ]


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def note(
    identity: ReceivedIdentity,
    rejected: list[ArrivedInstance],
    reason: RejectionReason = RejectionReason.QUALITY,
) -> ArrivedInstance:
    """A rejection note filed in identity's study that rejects these instances."""
    arrived = f.arrived(identity, sop_class_uid=KOS, modality="KO")
    rejection = Rejection(
        reason,
        arrived.instance.sop_instance_uid,
        tuple(
            RejectedInstance(
                i.instance.study_instance_uid,
                i.instance.series_instance_uid,
                i.instance.sop_instance_uid,
                i.instance.sop_class_uid,
            )
            for i in rejected
        ),
    )
    return replace(arrived, rejection=rejection)


def published(env: Env) -> tuple[Patient, ReceivedIdentity]:
    p = f.patient()
    o = env.place(p)
    return p, f.received(p, accession=o.accession_number, study_uid=o.study_instance_uid)


def test_a_rejected_instance_is_hidden_everywhere_but_kept(env: Env) -> None:
    _, identity = published(env)
    a, b = env.study(identity, 2)
    kos = note(identity, [a])
    env.clock.advance(60)
    assert env.store(kos).status is IngestStatus.STORED

    uid = identity.study_instance_uid
    assert env.visible(uid) == [b.instance.sop_instance_uid]  # the note is hidden too
    [view] = env.queries.studies(StudyFilter())
    assert view.study.instance_count == 1
    assert view.study.series_count == 1
    assert view.study.modalities == ("CT",)  # no KO: the note is a control object
    assert env.queries.instances(sop_uids=[a.instance.sop_instance_uid]) == []
    with env.uow(read_only=True) as uow:
        assert uow.studies.instance(a.instance.sop_instance_uid) is None
        assert uow.studies.instance(kos.instance.sop_instance_uid) is None
        # Kept: still indexed (a duplicate is still a duplicate), with reason, time and note.
        assert uow.studies.has_instance(a.instance.sop_instance_uid)
        assert uow.studies.has_instance(kos.instance.sop_instance_uid)
        found = uow.studies.rejection(a.instance.sop_instance_uid)
        assert uow.studies.rejection(b.instance.sop_instance_uid) is None
    assert found is not None
    assert found.reason is RejectionReason.QUALITY
    assert found.rejected_by == kos.instance.sop_instance_uid
    assert found.rejected_at == env.clock.now()
    assert found.study_instance_uid == uid
    assert found.series_instance_uid == a.instance.series_instance_uid
    assert len(env.blobs.objects) == 3  # nothing deleted


def test_a_study_with_every_instance_rejected_leaves_the_clinical_lists(env: Env) -> None:
    _, identity = published(env)
    images = env.study(identity, 2)
    env.store(note(identity, images[:1]))
    env.store(note(identity, images[1:], RejectionReason.RETENTION_EXPIRED))
    assert env.queries.studies(StudyFilter()) == []
    [kept] = env.queries.studies(StudyFilter(is_published_only=False))
    assert kept.study.instance_count == 0
    assert kept.study.state is StudyState.PUBLISHED
    with env.uow(read_only=True) as uow:
        last = uow.studies.rejection(images[1].instance.sop_instance_uid)
    assert last is not None
    assert last.reason is RejectionReason.RETENTION_EXPIRED
    assert last.reason.is_deletion_requested


def test_sending_a_rejected_instance_again_is_refused_and_nothing_is_stored(env: Env) -> None:
    _, identity = published(env)
    a, _ = env.study(identity, 2)
    env.store(note(identity, [a]))
    before = dict(env.blobs.objects)
    with pytest.raises(InstanceRejected, match="113001"):
        env.store(a)
    assert env.blobs.objects == before


def test_an_instance_rejected_before_it_arrives_is_refused(env: Env) -> None:
    _, identity = published(env)
    [a] = env.study(identity, 1)
    late = f.arrived(identity)
    env.store(note(identity, [late], RejectionReason.PATIENT_SAFETY))
    with pytest.raises(InstanceRejected, match="113037"):
        env.store(late)
    assert env.visible(identity.study_instance_uid) == [a.instance.sop_instance_uid]


def test_an_instance_keeps_its_first_rejection(env: Env) -> None:
    _, identity = published(env)
    a, _ = env.study(identity, 2)
    first = note(identity, [a])
    env.store(first)
    env.store(note(identity, [a], RejectionReason.PATIENT_SAFETY))
    with env.uow(read_only=True) as uow:
        found = uow.studies.rejection(a.instance.sop_instance_uid)
    assert found is not None
    assert (found.reason, found.rejected_by) == (
        RejectionReason.QUALITY,
        first.instance.sop_instance_uid,
    )


def test_a_note_neither_holds_nor_routes_its_study(env: Env) -> None:
    _, identity = published(env)
    [a, _] = env.study(identity, 2)
    odd = replace(identity, accession_number="OTHER")  # would hold a study if it were an image
    kos = note(odd, [a])
    result = env.store(kos)
    assert result.state is StudyState.PUBLISHED
    assert env.queries.exceptions() == []
    assert kos.instance.sop_instance_uid not in env.hooked


def test_rejecting_a_held_study_whole_closes_its_exception(env: Env) -> None:
    identity = f.received(f.patient())  # unknown patient: held
    images = env.study(identity, 2)
    [exc] = env.queries.exceptions()
    env.store(note(identity, images, RejectionReason.INCORRECT_WORKLIST_ENTRY))
    assert env.queries.exceptions() == []
    with env.uow(read_only=True) as uow:
        closed = uow.exceptions.get(exc.id)
    assert closed is not None
    assert closed.resolution == RESOLVED_BY_REJECTION


def test_rejecting_part_of_a_held_study_keeps_its_exception(env: Env) -> None:
    identity = f.received(f.patient())
    a, _ = env.study(identity, 2)
    env.store(note(identity, [a]))
    assert len(env.queries.exceptions()) == 1


def test_a_new_instance_in_an_emptied_study_is_matched_afresh(env: Env) -> None:
    p = f.patient()
    identity = f.received(p)  # an unregistered patient, no order: held
    images = env.study(identity, 1)
    env.store(note(identity, images, RejectionReason.INCORRECT_WORKLIST_ENTRY))
    assert env.queries.exceptions() == []
    # Acquired again in the same study, now against the right order.
    o = env.place(p, study_instance_uid=identity.study_instance_uid)
    again = f.arrived(replace(identity, accession_number=o.accession_number))
    assert env.store(again).state is StudyState.PUBLISHED
    [view] = env.queries.studies(StudyFilter())
    assert view.study.accession_number == o.accession_number
    assert view.study.instance_count == 1


def test_an_emptied_study_that_still_matches_nothing_is_held_again(env: Env) -> None:
    identity = f.received(f.patient())
    images = env.study(identity, 1)
    env.store(note(identity, images))
    assert env.store(f.arrived(identity)).state is StudyState.HELD
    [exc] = env.queries.exceptions()  # a new exception to work
    assert exc.reason is ExceptionReason.UNKNOWN_PATIENT


def test_a_note_filed_in_a_study_of_its_own_leaves_it_to_the_images(env: Env) -> None:
    _, identity = published(env)
    late = f.arrived(identity)
    result = env.store(note(identity, [late]))  # the note comes first
    assert result.state is StudyState.HELD
    assert env.queries.exceptions() == []  # nothing to reconcile yet
    other = f.arrived(identity)
    assert env.store(other).state is StudyState.PUBLISHED  # matched like a first image
    [view] = env.queries.studies(StudyFilter())
    assert view.study.instance_count == 1


def test_the_rejection_is_audited_in_its_transaction(env: Env) -> None:
    p, identity = published(env)
    a, _ = env.study(identity, 2)
    kos = note(identity, [a])
    env.store(kos)
    with env.uow(read_only=True) as uow:
        records = uow.audit.search(limit=10)
    [event] = [
        e
        for e in (from_canonical(r.canonical) for r in records)
        if e.event_id is EventId.INSTANCES_ACCESSED
    ]
    assert event.action is Action.DELETE
    assert event.requestor.user_id == "MOD1"
    assert "Rejected for Quality Reasons (113001)" in event.outcome_description
    assert kos.instance.sop_instance_uid in event.outcome_description
    [study] = [o for o in event.objects if o.kind is ObjectKind.STUDY]
    assert study.id == identity.study_instance_uid
    assert study.accession_numbers == (identity.accession_number,)
    assert event.patients == (p.primary,)


def test_reasons_are_the_four_iocm_titles() -> None:
    assert reason_for("113039", "DCM") is RejectionReason.RETENTION_EXPIRED
    assert reason_for(" 113001 ", "DCM ") is RejectionReason.QUALITY
    assert reason_for("113000", "DCM") is None  # Of Interest
    assert reason_for("113001", "SRT") is None
    assert RejectionReason.INCORRECT_WORKLIST_ENTRY.meaning == "Incorrect Modality Worklist Entry"
    assert not RejectionReason.QUALITY.is_deletion_requested


def test_the_audit_record_goes_to_the_trail_collector_after_commit(tmp_path: Path) -> None:
    sent: list[AuditEvent] = []

    class Collector:
        def send(self, event: AuditEvent) -> None:
            sent.append(event)

    env = Env(tmp_path)
    trail = AuditTrail(env.uow, env.clock, AuditSource("PACSFLOW"), Collector())
    env.ingest = Ingest(env.uow, env.blobs, env.clock, audit=trail)
    _, identity = published(env)
    a, _ = env.study(identity, 2)
    assert sent == []  # storing images is audited when the listener names the receiver
    env.store(note(identity, [a]))
    [event] = sent
    assert (event.event_id, event.action) == (EventId.INSTANCES_ACCESSED, Action.DELETE)
    assert event.source == AuditSource("PACSFLOW")
