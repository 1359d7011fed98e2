"""Late matching: an order or registration that arrives after its images resolves them."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pacsflow.adapters.db.tables import exceptions, match_events
from pacsflow.domain import commands as cmd
from pacsflow.domain.matching import ExceptionReason
from pacsflow.domain.patients import Demographics
from pacsflow.domain.studies import StudyFilter, StudyState
from pacsflow.workflow.ingest import Ingest
from pacsflow.workflow.intake import Intake
from pacsflow.workflow.queries import Queries
from tests import factories as f
from tests.fakes import FixedClock, InMemoryBlobStore, memory_uow
from tests.receiving import receive


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.uow = memory_uow()
        clock = FixedClock()
        blobs = InMemoryBlobStore()
        self.intake = Intake(self.uow, clock)
        self.ingest = Ingest(self.uow, blobs, clock)
        self.queries = Queries(self.uow, blobs)
        self.tmp = tmp_path

    def apply(self, *commands: cmd.Command) -> None:
        receive(self.intake, *commands)

    def store(self, rec) -> None:
        arrived = f.arrived(rec)
        src = self.tmp / f"{arrived.instance.sop_instance_uid}.dcm"
        src.write_bytes(b"x")
        self.ingest.receive(arrived, src)

    def published(self) -> list[str]:
        return [v.study.study_instance_uid for v in self.queries.studies(StudyFilter())]

    def rows(self, table: sa.Table) -> list[sa.Row[Any]]:
        with self.uow.engine.connect() as conn:
            return list(conn.execute(sa.select(table)))


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_an_order_arriving_after_its_images_publishes_them(world: World) -> None:
    p = f.patient()
    o = f.order(p)
    rec = f.received(p, accession=o.accession_number)
    world.store(rec)
    [held] = world.queries.exceptions()
    assert held.reason is ExceptionReason.UNKNOWN_ACCESSION
    world.apply(cmd.PlaceOrder(o, p))
    assert world.published() == [rec.study_instance_uid]
    assert world.queries.exceptions() == []
    [closed] = world.rows(exceptions)
    assert closed.resolution == "late_match"
    assert [r.kind for r in world.rows(match_events)] == ["held", "late_matched"]


def test_a_registration_that_fixes_demographics_publishes_the_study(world: World) -> None:
    p = f.patient(birth=date(1970, 1, 2))
    o = f.order(p)
    world.apply(cmd.PlaceOrder(o, p))
    rec = f.received(p, accession=o.accession_number, birth=date(1971, 1, 2))
    world.store(rec)
    assert world.queries.exceptions()[0].reason is ExceptionReason.DEMOGRAPHICS_DIFFER
    corrected = replace(
        p, demographics=Demographics(p.demographics.name, date(1971, 1, 2), p.demographics.sex)
    )
    world.apply(cmd.UpdatePatient(corrected))
    assert world.published() == [rec.study_instance_uid]


def test_a_registration_alone_does_not_publish_an_unscheduled_study(world: World) -> None:
    p = f.patient()
    world.store(f.received(p))
    world.apply(cmd.RegisterPatient(p))
    assert world.published() == []
    assert len(world.queries.exceptions()) == 1


def test_an_order_for_another_patient_does_not_publish(world: World) -> None:
    p, q = f.patient(), f.patient(family="OTHER", given="PERSON")
    o = f.order(q)
    world.store(f.received(p, accession=o.accession_number))
    world.apply(cmd.PlaceOrder(o, q))
    assert world.published() == []
    [still] = world.queries.exceptions()
    assert still.reason is ExceptionReason.UNKNOWN_ACCESSION  # kept as first recorded


def test_an_inconsistent_study_waits_for_a_person(world: World) -> None:
    p = f.patient()
    o = f.order(p)
    rec = f.received(p, accession=o.accession_number)
    world.store(rec)
    world.store(replace(rec, patient=f.identifier("SOMEONE-ELSE")))
    world.apply(cmd.PlaceOrder(o, p))
    states = {v.study.state for v in world.queries.studies(StudyFilter(is_published_only=False))}
    assert states == {StudyState.HELD}
