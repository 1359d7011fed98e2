"""An order's prefetch narrowed by the body part its procedure names."""

from __future__ import annotations

from datetime import date

import pytest

from pacsflow.domain.orders import ProcedureCode
from pacsflow.domain.patients import PatientIdentifier
from pacsflow.domain.prefetch import PriorCandidate, RelevanceRule
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


def _chosen(body_parts: dict[str, str], code: ProcedureCode, description: str) -> set[str]:
    uow = memory_uow()
    clock = FixedClock()
    prefetch = Prefetch(
        uow,
        clock,
        StubArchives(),
        ["PACS"],
        [RelevanceRule(same_body_part=True, max_priors=5)],
        body_parts=body_parts,
    )
    order = f.order(f.patient(), procedure_code=code, requested_procedure_description=description)
    with uow() as u:
        prefetch.on_order(u, order, clock.now())
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
