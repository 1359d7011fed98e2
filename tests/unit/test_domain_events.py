"""Domain events: published in the transaction that records them, handed over in batches."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import timedelta

import pytest

from pacsflow.adapters.routing_yaml import YamlRuleText
from pacsflow.domain.audit import ActiveParticipant, AuditSource
from pacsflow.domain.events import InstanceStored, OrderPlaced, StudyPublished
from pacsflow.domain.jobs import NewJob
from pacsflow.domain.studies import StudyState
from pacsflow.domain.uids import Uid
from pacsflow.workflow.events import EventBus
from pacsflow.workflow.ingest import Ingest
from pacsflow.workflow.ports.uow import UnitOfWork
from pacsflow.workflow.routing import ROUTE_STUDY_JOB, Routing
from tests import factories as f
from tests.fakes import FixedClock, InMemoryBlobStore, memory_uow
from tests.unit.test_group_commit import wait_queued

STABLE_CT = """
rules:
  - name: whole-ct-studies
    trigger: study_stable
    when: {ModalitiesInStudy: CT}
    send_to: [ORTHANC]
"""


def test_a_subscriber_gets_the_events_of_its_kind_in_publishing_order() -> None:
    bus = EventBus()
    got: list[tuple[str, list[Uid]]] = []
    bus.subscribe(StudyPublished, lambda _u, es: got.append(("a", [e.study_uid for e in es])))
    bus.subscribe(StudyPublished, lambda _u, es: got.append(("b", [e.study_uid for e in es])))
    bus.subscribe(OrderPlaced, lambda _u, es: got.append(("order", [])))
    now = FixedClock().now()
    with memory_uow()() as uow:
        bus.publish(uow, [StudyPublished(Uid("1.1"), now), StudyPublished(Uid("1.2"), now)])
    assert got == [("a", [Uid("1.1"), Uid("1.2")]), ("b", [Uid("1.1"), Uid("1.2")])]


def test_work_a_subscriber_enqueues_commits_and_rolls_back_with_the_instance() -> None:
    uow, clock, bus = memory_uow(), FixedClock(), EventBus()
    fail = False

    def enqueue(u: UnitOfWork, events: Sequence[InstanceStored]) -> None:
        for e in events:
            u.jobs.enqueue(NewJob("caused", {"study_uid": e.study_uid}), e.at)
        if fail:
            raise RuntimeError("subscriber failed")

    bus.subscribe(InstanceStored, enqueue)
    ingest = Ingest(uow, InMemoryBlobStore(), clock, bus)
    kept = f.arrived(f.received())
    ingest.receive(kept, b"DICM")
    fail = True
    lost = f.arrived(f.received())
    with pytest.raises(RuntimeError):
        ingest.receive(lost, b"DICM")
    with uow(read_only=True) as u:
        payloads = [j.payload["study_uid"] for j in u.jobs.list(kind="caused")]
        is_lost_indexed = u.studies.view_arrival(
            lost.instance.sop_instance_uid, lost.identity.study_instance_uid
        ).is_indexed
    assert payloads == [kept.identity.study_instance_uid]
    assert not is_lost_indexed


def test_instances_stored_in_one_round_reach_subscribers_as_one_batch() -> None:
    uow, bus = memory_uow(), EventBus()
    batches: list[list[Uid]] = []
    entered, gate = threading.Event(), threading.Event()

    def record(_u: UnitOfWork, events: Sequence[InstanceStored]) -> None:
        batches.append([e.stored.instance.sop_instance_uid for e in events])
        entered.set()
        assert gate.wait(5)  # the first round stays open while the others queue

    bus.subscribe(InstanceStored, record)
    ingest = Ingest(uow, InMemoryBlobStore(), FixedClock(), bus)
    identity = f.received()
    first, *rest = [f.arrived(identity) for _ in range(4)]
    threads = [threading.Thread(target=ingest.receive, args=(a, b"DICM")) for a in [first, *rest]]
    threads[0].start()
    assert entered.wait(5)
    for t in threads[1:]:
        t.start()
    wait_queued(ingest._rounds, len(rest))
    gate.set()
    for t in threads:
        t.join(5)
    assert batches[0] == [first.instance.sop_instance_uid]
    assert sorted(batches[1]) == sorted(a.instance.sop_instance_uid for a in rest)
    assert len(batches) == 2


def test_routing_looks_for_a_study_job_once_per_batch() -> None:
    uow, clock = memory_uow(), FixedClock()
    routing = Routing(
        uow,
        clock,
        lambda _instance: {},
        sender=None,  # type: ignore[arg-type]  # nothing is sent here
        rule_text=YamlRuleText(),
        is_destination=lambda _name: True,
        audit_source=AuditSource("PACSFLOW"),
        stable_after=timedelta(seconds=60),
    )
    routing.save(STABLE_CT, ActiveParticipant(user_id="admin"), activate=True)
    identity = f.received()
    events = [InstanceStored(f.arrived(identity), StudyState.HELD, clock.now()) for _ in range(3)]
    with uow() as u:
        looked: list[str] = []
        has_job = u.jobs.has_job

        def counted(key: str, *, unfinished_only: bool = True, pending_only: bool = False) -> bool:
            looked.append(key)
            return has_job(key, unfinished_only=unfinished_only, pending_only=pending_only)

        u.jobs.has_job = counted  # type: ignore[method-assign,assignment]
        routing.on_stored(u, events)
        u.commit()
    with uow(read_only=True) as u:
        jobs = u.jobs.list(kind=ROUTE_STUDY_JOB)
    assert looked == [f"route-study:{identity.study_instance_uid}"]
    assert [j.payload["study_uid"] for j in jobs] == [identity.study_instance_uid]
    assert jobs[0].run_at == clock.now() + timedelta(seconds=60)
