"""An order's prefetch narrowed by the body part its procedure names."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from pacsflow.domain.events import OrderPlaced
from pacsflow.domain.orders import ProcedureCode
from pacsflow.domain.patients import PatientIdentifier
from pacsflow.domain.prefetch import PriorCandidate, RelevanceRule
from pacsflow.domain.studies import StudyState
from pacsflow.domain.uids import Uid
from pacsflow.workflow.prefetch import PREFETCH_JOB, Prefetch
from tests import factories as f
from tests.fakes import FixedClock, memory_uow


class StubArchives:
    """An archive holding CT studies of the patient: chest, head, and one of unknown part."""

    def find_studies(self, archive: str, patient: PatientIdentifier) -> list[PriorCandidate]:
        def ct(uid: str, day: int, *parts: str) -> PriorCandidate:
            return PriorCandidate(uid, archive, date(2026, 1, day), ("CT",), parts)

        return [ct("chest", 5, "CHEST"), ct("head", 6, "HEAD"), ct("unknown", 7)]

    def retrieve_study(self, archive: str, study_uid: str) -> int:
        raise AssertionError("no retrieval in this test")


def _chosen(
    body_parts: dict[str, str],
    code: ProcedureCode,
    description: str,
    *,
    max_priors: int = 5,
    local_body_part: str | None = None,
) -> set[str]:
    """The priors chosen for a CT order (with a local study of the patient if told)."""
    uow = memory_uow()
    clock = FixedClock()
    prefetch = Prefetch(
        uow,
        clock,
        StubArchives(),
        ["PACS"],
        [RelevanceRule(same_body_part=True, max_priors=max_priors)],
        body_parts=body_parts,
    )
    p = f.patient()
    order = f.order(p, procedure_code=code, requested_procedure_description=description)
    with uow() as u:
        if local_body_part is not None:
            local = f.received(p, study_uid=Uid("1.2.826.0.1.99"))
            u.studies.add_instance(
                replace(f.arrived(local, body_part=local_body_part), study_date=date(2026, 6, 1)),
                clock.now(),
            )
            u.studies.set_match(local.study_instance_uid, StudyState.PUBLISHED, p.primary, "")
        prefetch.on_order(u, [OrderPlaced(order, clock.now())])
        u.commit()
    with uow(read_only=True) as u:
        [job] = u.jobs.list(kind=PREFETCH_JOB)
    prefetch.search(job)
    return {p.study_instance_uid for p in prefetch.priors(f"order:{order.accession_number}")}


def test_an_order_takes_its_body_part_from_the_procedure_code_mapping() -> None:
    chosen = _chosen({"CT123": "CHEST"}, ProcedureCode("CT123", "L", "CT 123"), "protocol 123")
    assert chosen == {"chest", "unknown"}  # a prior of unknown body part is kept


@pytest.mark.parametrize(
    ("meaning", "description"), [("CT chest w/o contrast", ""), ("", "CT Thorax")]
)
def test_an_unmapped_code_takes_its_body_part_from_its_text(meaning: str, description: str) -> None:
    chosen = _chosen({}, ProcedureCode("CTX", "L", meaning), description)
    assert chosen == {"chest", "unknown"}


def test_an_order_whose_body_part_is_unknown_keeps_every_prior() -> None:
    chosen = _chosen({}, ProcedureCode("CTX", "L", "CT protocol 7"), "")
    assert chosen == {"chest", "head", "unknown"}


def test_a_local_study_of_another_body_part_does_not_take_the_place_of_a_relevant_prior() -> None:
    code = ProcedureCode("CTCHEST", "L", "CT chest")
    head_here = _chosen({}, code, "", max_priors=2, local_body_part="HEAD")
    assert head_here == {"unknown", "chest"}
    chest_here = _chosen({}, code, "", max_priors=2, local_body_part="CHEST")
    assert chest_here == {"1.2.826.0.1.99", "unknown"}  # the newest: the local chest CT


def test_an_unscheduled_order_looks_for_priors_before_the_sites_day() -> None:
    # 10:10 UTC on 28 November is 00:10 on 29 November in Kiritimati (UTC+14).
    clock = FixedClock(
        datetime(2026, 11, 28, 10, 10, tzinfo=UTC), zone=ZoneInfo("Pacific/Kiritimati")
    )
    uow = memory_uow()
    prefetch = Prefetch(uow, clock, StubArchives(), ["PACS"], [RelevanceRule()])
    p = f.patient()
    order = replace(f.order(p), scheduled_start=None)
    with uow() as u:
        prefetch.on_order(u, [OrderPlaced(order, clock.now())])
        u.commit()
    with uow(read_only=True) as u:
        [job] = u.jobs.list(kind=PREFETCH_JOB)
    assert job.payload["reference_date"] == "2026-11-29"
