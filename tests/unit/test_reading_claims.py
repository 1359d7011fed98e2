"""The reading worklist use case on an in-memory store: what is listed, priors, claims in time."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pacsflow.domain import commands as cmd
from pacsflow.domain.errors import InvalidInput
from pacsflow.domain.jobs import NewJob
from pacsflow.domain.orders import Order, Priority
from pacsflow.domain.prefetch import PriorRecord, PriorState
from pacsflow.domain.reading import (
    Claim,
    NotClaimHolder,
    ReadingFilter,
    ReadingTargets,
    StudyClaimed,
)
from pacsflow.domain.rejections import RejectedInstance, Rejection, RejectionReason
from pacsflow.domain.reports import Report, ReportStatus
from pacsflow.domain.studies import InstanceRecord
from pacsflow.domain.uids import Uid, new_uid
from pacsflow.workflow.ingest import Ingest
from pacsflow.workflow.intake import Intake
from pacsflow.workflow.reading import (
    NotOnWorklist,
    ReadingWorklist,
    UnknownStudy,
    priors_ready,
)
from tests import factories as f
from tests.fakes import FixedClock, InMemoryBlobStore, memory_uow
from tests.receiving import receive

HALF_HOUR = timedelta(minutes=30)


class World:
    last: InstanceRecord  # the instance stored last

    def __init__(self, tmp_path: Path) -> None:
        self.uow = memory_uow()
        self.clock = FixedClock()
        self.intake = Intake(self.uow, self.clock)
        self.ingest = Ingest(self.uow, InMemoryBlobStore(), self.clock)
        self.reading = ReadingWorklist(
            self.uow, self.clock, ReadingTargets(), HALF_HOUR, site="NORTH"
        )
        self.tmp = tmp_path

    def store(
        self, p: object, accession: str = "", study_uid: Uid | None = None, **instance: object
    ) -> Uid:
        received = f.received(p, accession=accession, study_uid=study_uid)  # type: ignore[arg-type]
        arrived = f.arrived(received, **instance)
        src = self.tmp / f"{arrived.instance.sop_instance_uid}.dcm"
        src.write_bytes(b"x")
        self.ingest.receive(arrived, src)
        self.last = arrived.instance
        return arrived.instance.study_instance_uid

    def published(self, **order_kw: object) -> Order:
        p = f.patient()
        o = f.order(p, **order_kw)
        receive(self.intake, cmd.PlaceOrder(o, p))
        self.store(p, o.accession_number, o.study_instance_uid)
        self.clock.advance(60)
        return o

    def listed(self, **kw: object) -> list[Uid]:
        return [e.item.study_instance_uid for e in self.reading.entries(**kw)]  # type: ignore[arg-type]


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_the_list_shows_published_studies_in_reading_order(world: World) -> None:
    routine = world.published()
    stat = world.published(priority=Priority.STAT)
    held = world.store(f.patient())  # unregistered patient, no order: held
    assert world.listed() == [stat.study_instance_uid, routine.study_instance_uid]
    assert held not in world.listed()
    first = world.reading.entries()[0]
    assert first.target == timedelta(hours=1)
    assert first.waiting == timedelta(minutes=1)
    assert not first.is_overdue
    assert first.report_status is ReportStatus.UNREAD
    assert first.site == "NORTH"
    world.clock.advance(2 * 3600)
    assert world.reading.entries()[0].is_overdue
    assert world.listed(limit=1) == [stat.study_instance_uid]
    assert world.listed(site="SOUTH") == []
    assert world.listed(flt=ReadingFilter(modality="MR")) == []


def test_priors_fetched_from_an_archive_are_not_read(world: World) -> None:
    order = world.published()
    p = f.patient()
    with world.uow() as uow:
        uow.patients.save(p, world.clock.now())
        prior_uid = new_uid()
        uow.prefetch.add(
            PriorRecord(
                f"order:{order.accession_number}",
                prior_uid,
                "PACS",
                p.primary,
                PriorState.RETRIEVING,
                world.clock.now(),
            )
        )
        uow.commit()
    world.store(p, "OLD1", prior_uid)
    assert world.listed() == [order.study_instance_uid]
    with pytest.raises(NotOnWorklist, match="prior"):
        world.reading.claim(prior_uid, "house")


def test_priors_are_not_ready_while_the_search_runs_or_any_is_missing(world: World) -> None:
    order = world.published()
    key = f"order:{order.accession_number}"
    assert world.reading.entries()[0].item.priors_ready is None
    with world.uow() as uow:
        uow.jobs.enqueue(NewJob("prefetch", {}, ordering_key=f"prefetch:{key}"), world.clock.now())
        uow.commit()
    assert world.reading.entries()[0].item.priors_ready is False
    assert priors_ready([], is_searching=False) is None
    assert priors_ready([PriorState.LOCAL, PriorState.DONE], is_searching=False) is True
    assert priors_ready([PriorState.DONE, PriorState.QUEUED], is_searching=False) is False
    assert priors_ready([PriorState.DONE], is_searching=True) is False


def test_a_claim_holds_until_it_expires(world: World) -> None:
    uid = world.published().study_instance_uid
    claim = world.reading.claim(uid, "house")
    assert claim.expires_at - claim.claimed_at == HALF_HOUR
    world.clock.advance(600)
    with pytest.raises(StudyClaimed) as held:
        world.reading.claim(uid, "cuddy")
    assert held.value.claim == claim
    extended = world.reading.claim(uid, "house")
    assert extended.expires_at == claim.expires_at + timedelta(minutes=10)
    assert world.listed(flt=ReadingFilter(reader="house")) == [uid]
    world.clock.advance(HALF_HOUR.total_seconds())
    assert world.reading.entries()[0].claim is None
    assert world.reading.claim(uid, "cuddy").reader == "cuddy"
    with pytest.raises(NotClaimHolder):
        world.reading.release(uid, "house")
    world.reading.release(uid, "cuddy")
    with pytest.raises(NotClaimHolder):
        world.reading.release(uid, "cuddy")


def test_a_claim_that_lands_first_wins_over_one_read_before_it(world: World) -> None:
    uid = world.published().study_instance_uid
    now = world.clock.now()
    with world.uow() as uow:
        stored = uow.reading.put_claim(Claim(uid, "house", now, now + HALF_HOUR), now)
        assert stored.reader == "house"
        # cuddy decided on an empty claim row, but house's claim is there now: it stands.
        lost = uow.reading.put_claim(Claim(uid, "cuddy", now, now + HALF_HOUR), now)
        assert lost == stored
        uow.commit()


def test_claims_and_scores_name_existing_studies(world: World) -> None:
    missing = Uid("1.2.3.4")
    with pytest.raises(UnknownStudy):
        world.reading.claim(missing, "house")
    with pytest.raises(UnknownStudy):
        world.reading.release(missing, "house")
    with pytest.raises(UnknownStudy):
        world.reading.set_triage_score(missing, 0.5)
    held = world.store(f.patient())
    with pytest.raises(NotOnWorklist, match="held"):
        world.reading.claim(held, "house")
    with pytest.raises(InvalidInput):
        world.reading.set_triage_score(held, float("nan"))


def test_triage_scores_and_final_reports_change_the_list(world: World) -> None:
    first, second = world.published(), world.published()
    world.reading.set_triage_score(first.study_instance_uid, 0.9)
    world.reading.set_triage_score(first.study_instance_uid, None)  # cleared: unscored again
    world.reading.set_triage_score(second.study_instance_uid, 0.4)
    assert world.listed() == [second.study_instance_uid, first.study_instance_uid]
    with world.uow() as uow:
        rid = uow.reports.add(
            Report(second.accession_number, ReportStatus.FINAL, "ok"), world.clock.now(), "t"
        )
        uow.reports.attach(rid, second.study_instance_uid)
        uow.commit()
    assert world.listed() == [first.study_instance_uid]
    with pytest.raises(NotOnWorklist, match="finally reported"):
        world.reading.claim(second.study_instance_uid, "house")


def test_rejected_instances_do_not_count(world: World) -> None:
    order = world.published()
    ct = world.last
    with world.uow() as uow:
        patient = uow.patients.find(order.patient)
    world.store(patient, order.accession_number, order.study_instance_uid, modality="MR")
    mr = world.last
    assert world.reading.entries()[0].item.modalities == ("CT", "MR")

    def reject(*instances: InstanceRecord) -> None:
        rejected = tuple(
            RejectedInstance(
                i.study_instance_uid, i.series_instance_uid, i.sop_instance_uid, i.sop_class_uid
            )
            for i in instances
        )
        with world.uow() as uow:
            uow.studies.reject(
                Rejection(RejectionReason.QUALITY, new_uid(), rejected), world.clock.now()
            )
            uow.commit()

    reject(mr)
    assert world.reading.entries()[0].item.modalities == ("CT",)
    reject(ct)
    assert world.listed() == []
