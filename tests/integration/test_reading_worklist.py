"""The reading worklist over HTTP: published studies stored by storescu against real orders,
ordered by priority, triage score and time against the target; filters; claims that expire;
held and finally reported studies never listed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from pacsflow.adapters.db import SqlUnitOfWorkFactory
from pacsflow.app import Pacsflow
from pacsflow.config import DicomPeer
from pacsflow.domain.access import Role
from pacsflow.domain.orders import Order, Priority, ProcedureCode
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier
from pacsflow.domain.prefetch import PriorRecord, PriorState
from pacsflow.domain.reports import Report, ReportStatus
from pacsflow.domain.uids import new_uid
from tests.conftest import make_settings, requires_dcmtk, restamp, storescu
from tests.fakes import RunningClock
from tests.scheduling import send_scheduled

pytestmark = [pytest.mark.dcmtk, requires_dcmtk]

MR_BRAIN = {
    "modality": "MR",
    "procedure_code": ProcedureCode("MRBRAIN", "L", "MR brain"),
    "requested_procedure_description": "MR BRAIN WITHOUT CONTRAST",
}


@dataclass
class Reading:
    node: Pacsflow
    tmp: Path
    clients: dict[str, httpx.Client]
    clock: RunningClock

    def study(self, name: str, sample: str = "CT_small.dcm", **order_kw: object) -> Order:
        """A published study of a new order (stored with storescu); its order.

        The clock is stopped (see _reading); it moves a second after each study, so that
        each arrives one second after the one before.
        """
        _sop, order = send_scheduled(self.node, self.tmp, sample, name, **order_kw)
        self.clock.advance(1)
        return order

    def uow(self) -> SqlUnitOfWorkFactory:
        return SqlUnitOfWorkFactory(self.node.engine)

    def triage(self, order: Order, score: float | None) -> None:
        with self.uow()() as uow:
            assert uow.reading.set_triage_score(order.study_instance_uid, score)
            uow.commit()

    def report(self, order: Order, status: ReportStatus) -> None:
        """A report version attached directly (report intake is not what is tested here)."""
        with self.uow()() as uow:
            report_id = uow.reports.add(
                Report(order.accession_number, status, "No acute finding."),
                self.clock.now(),
                "test",
            )
            uow.reports.attach(report_id, order.study_instance_uid)
            uow.commit()

    def prior(self, order: Order, state: PriorState) -> None:
        with self.uow()() as uow:
            uow.prefetch.add(
                PriorRecord(
                    request_key=f"order:{order.accession_number}",
                    study_instance_uid=new_uid(),
                    archive="PACS",
                    patient=order.patient,
                    state=state,
                    requested_at=self.clock.now(),
                )
            )
            uow.commit()

    def worklist(self, who: str = "house", **params: Any) -> list[dict[str, Any]]:
        res = self.clients[who].get("/api/reading-worklist", params=params)
        assert res.status_code == 200, res.text
        items: list[dict[str, Any]] = res.json()
        return items

    def uids(self, **params: Any) -> list[str]:
        return [i["study_instance_uid"] for i in self.worklist(**params)]

    def claim(self, who: str, order: Order, action: str = "claim") -> httpx.Response:
        uid = order.study_instance_uid
        return self.clients[who].post(f"/api/reading-worklist/{uid}/{action}")


def _reading(tmp_path: Path, clock: RunningClock, **settings: object) -> Iterator[Reading]:
    node = Pacsflow(
        make_settings(
            tmp_path,
            peers=[DicomPeer(ae_title="DEST", host="127.0.0.1", port=9)],
            site="NORTH",
            **settings,
        ),
        clock,
    )
    node.start()
    # Waiting times and claims move only when a test moves the clock: a slow machine
    # neither lets a claim expire early nor makes a study wait longer.
    clock.freeze()
    users = {"house": Role.RADIOLOGIST, "cuddy": Role.RADIOLOGIST, "wilson": Role.CLINICIAN}
    clients = {}
    for name, role in users.items():
        node.accounts.create_user(name, [role])
        clients[name] = httpx.Client(
            base_url=f"http://127.0.0.1:{node.http.port}",
            headers={"Authorization": f"Bearer {node.accounts.create_token(name, 'tests')}"},
            timeout=30,
        )
    try:
        yield Reading(node, tmp_path, clients, clock)
    finally:
        for client in clients.values():
            client.close()
        node.stop()


@pytest.fixture
def reading(tmp_path: Path, clock: RunningClock) -> Iterator[Reading]:
    # ROUTINE studies are overdue almost at once; STAT and ASAP keep their defaults.
    yield from _reading(tmp_path, clock, reading_targets={"routine": 0.001})


def test_the_worklist_orders_by_priority_then_triage_score_then_time_against_target(
    reading: Reading,
) -> None:
    routine_first = reading.study("routine-first")
    routine_second = reading.study("routine-second")
    low = reading.study("routine-low-score")
    high = reading.study("routine-high-score")
    asap = reading.study("asap-mr", "MR_small.dcm", priority=Priority.ASAP, **MR_BRAIN)
    stat = reading.study("stat", priority=Priority.STAT)
    reading.triage(low, 0.2)
    reading.triage(high, 0.97)
    held_path, held = restamp("CT_small.dcm", reading.tmp / "held.dcm", patient_id="NOBODY")
    assert storescu(reading.node.dicom.port, held_path).returncode == 0

    reading.clock.advance(60)  # the STAT study waits a minute (and the one second after it)
    items = reading.worklist()
    assert [i["study_instance_uid"] for i in items] == [
        stat.study_instance_uid,
        asap.study_instance_uid,
        high.study_instance_uid,
        low.study_instance_uid,
        routine_first.study_instance_uid,  # waited longer: more overdue
        routine_second.study_instance_uid,
    ]
    assert str(held.StudyInstanceUID) not in {i["study_instance_uid"] for i in items}
    by_uid = {i["study_instance_uid"]: i for i in items}
    s = by_uid[stat.study_instance_uid]
    assert (s["priority"], s["target_minutes"], s["overdue"]) == ("STAT", 60.0, False)
    assert s["accession_number"] == stat.accession_number
    assert s["patient_id"] == stat.patient.value
    assert s["patient_name"] == "Dvořák^Antonín"
    assert s["modalities"] == ["CT"]
    assert (s["procedure_code"], s["procedure_description"]) == ("CTCHEST", "CT CHEST")
    assert s["triage_score"] is None
    assert s["report_status"] == "unread"
    assert s["priors_ready"] is None  # no prefetch request
    assert s["claimed_by"] is None
    assert s["site"] == "NORTH"
    assert s["waiting_minutes"] == 1.0  # 61 s, in minutes to one decimal
    r = by_uid[high.study_instance_uid]
    assert (r["priority"], r["triage_score"], r["overdue"]) == ("ROUTINE", 0.97, True)
    assert r["target_minutes"] == 0.001
    assert by_uid[asap.study_instance_uid]["modalities"] == ["MR"]

    # A routine study scored above everything still reads after STAT and ASAP.
    reading.triage(routine_second, 1000.0)
    assert reading.uids()[:3] == [
        stat.study_instance_uid,
        asap.study_instance_uid,
        routine_second.study_instance_uid,
    ]
    # Clearing the score puts it back among the unscored.
    reading.triage(routine_second, None)
    assert reading.uids()[-1] == routine_second.study_instance_uid


def test_filters_site_modality_procedure_and_reader(reading: Reading) -> None:
    ct = reading.study("ct")
    mr = reading.study("mr", "MR_small.dcm", **MR_BRAIN)
    both = {ct.study_instance_uid, mr.study_instance_uid}
    assert set(reading.uids(site="NORTH")) == both
    assert reading.uids(site="SOUTH") == []
    assert reading.uids(modality="MR") == [mr.study_instance_uid]
    assert reading.uids(modality="ct") == [ct.study_instance_uid]
    assert reading.uids(procedure="brain") == [mr.study_instance_uid]
    assert reading.uids(procedure="CTCHEST") == [ct.study_instance_uid]
    assert set(reading.uids(procedure=["MRBRAIN", "chest"])) == both
    assert reading.uids(reader="house") == []
    assert reading.claim("house", mr).status_code == 200
    assert reading.uids(reader="house") == [mr.study_instance_uid]
    assert reading.uids(reader="cuddy") == []


def test_priors_ready_only_when_every_prior_of_the_order_is_local(reading: Reading) -> None:
    ready, waiting, failed = (reading.study(n) for n in ("ready", "waiting", "failed"))
    reading.prior(ready, PriorState.LOCAL)
    reading.prior(ready, PriorState.DONE)
    reading.prior(waiting, PriorState.DONE)
    reading.prior(waiting, PriorState.RETRIEVING)
    reading.prior(failed, PriorState.FAILED)
    by_uid = {i["study_instance_uid"]: i["priors_ready"] for i in reading.worklist()}
    assert by_uid[ready.study_instance_uid] is True
    assert by_uid[waiting.study_instance_uid] is False
    assert by_uid[failed.study_instance_uid] is False


def test_a_finally_reported_study_leaves_the_worklist(reading: Reading) -> None:
    final = reading.study("final")
    preliminary = reading.study("preliminary")
    corrected = reading.study("corrected")
    reading.report(final, ReportStatus.PRELIMINARY)
    reading.report(preliminary, ReportStatus.PRELIMINARY)
    statuses = {i["study_instance_uid"]: i["report_status"] for i in reading.worklist()}
    assert statuses[final.study_instance_uid] == "preliminary"

    reading.report(final, ReportStatus.FINAL)
    reading.report(corrected, ReportStatus.CORRECTED)
    assert reading.uids() == [preliminary.study_instance_uid]
    refused = reading.claim("house", final)
    assert refused.status_code == 409
    assert "finally reported" in refused.json()["detail"]

    # A cancelled final report puts the study back on the list (unread).
    reading.report(final, ReportStatus.CANCELLED)
    statuses = {i["study_instance_uid"]: i["report_status"] for i in reading.worklist()}
    assert statuses == {
        preliminary.study_instance_uid: "preliminary",
        final.study_instance_uid: "unread",
    }


def test_claims_show_to_everyone_and_only_the_holder_extends_or_releases(
    reading: Reading,
) -> None:
    study = reading.study("claimed")
    other = reading.study("other")

    first = reading.claim("house", study)
    assert first.status_code == 200, first.text
    claim = first.json()
    assert claim["claimed_by"] == "house"
    claimed_at = datetime.fromisoformat(claim["claimed_at"])
    expires = datetime.fromisoformat(claim["claim_expires_at"])
    assert 29 * 60 <= (expires - claimed_at).total_seconds() <= 30 * 60  # the 30 min default

    # Everyone (a clinician too) sees who holds it.
    for who in ("cuddy", "wilson"):
        seen = {i["study_instance_uid"]: i for i in reading.worklist(who)}
        assert seen[study.study_instance_uid]["claimed_by"] == "house"
        assert seen[study.study_instance_uid]["claim_expires_at"] is not None
        assert seen[other.study_instance_uid]["claimed_by"] is None

    taken = reading.claim("cuddy", study)
    assert taken.status_code == 409
    assert taken.json()["claimed_by"] == "house"
    assert taken.json()["claim_expires_at"] == expires.isoformat()
    assert "house" in taken.json()["detail"]
    assert reading.claim("cuddy", study, "release").status_code == 409
    assert reading.claim("cuddy", other, "release").status_code == 409  # nobody holds it

    again = reading.claim("house", study)
    assert again.status_code == 200
    assert datetime.fromisoformat(again.json()["claim_expires_at"]) >= expires

    released = reading.claim("house", study, "release")
    assert released.status_code == 204
    assert reading.worklist()[0]["claimed_by"] is None
    assert reading.claim("cuddy", study).json()["claimed_by"] == "cuddy"


def test_only_radiologists_claim_and_only_listed_studies(reading: Reading, tmp_path: Path) -> None:
    study = reading.study("study")
    assert reading.claim("wilson", study).status_code == 403
    missing = reading.clients["house"].post("/api/reading-worklist/1.2.3.4.5/claim")
    assert missing.status_code == 404
    held_path, held = restamp("CT_small.dcm", tmp_path / "held.dcm", patient_id="NOBODY")
    assert storescu(reading.node.dicom.port, held_path).returncode == 0
    refused = reading.clients["house"].post(f"/api/reading-worklist/{held.StudyInstanceUID}/claim")
    assert refused.status_code == 409
    assert "held" in refused.json()["detail"]


@pytest.fixture
def short_claims(tmp_path: Path, clock: RunningClock) -> Iterator[Reading]:
    yield from _reading(tmp_path, clock, reading_claim_minutes=0.04)  # 2.4 s


def test_a_claim_expires_and_then_anyone_may_take_the_study(short_claims: Reading) -> None:
    reading = short_claims
    study = reading.study("expiring")
    first = reading.claim("house", study).json()
    expires = datetime.fromisoformat(first["claim_expires_at"])
    assert (expires - datetime.fromisoformat(first["claimed_at"])).total_seconds() == 2.4

    early = reading.claim("cuddy", study)
    assert early.status_code == 409
    assert early.json()["claimed_by"] == "house"
    reading.clock.advance(2.3)
    assert reading.claim("cuddy", study).status_code == 409  # not yet
    reading.clock.advance(0.1)  # the claim's end
    taken = reading.claim("cuddy", study)
    assert taken.status_code == 200, taken.text
    assert datetime.fromisoformat(taken.json()["claimed_at"]) >= expires
    seen = reading.worklist("house")[0]
    assert seen["claimed_by"] == "cuddy"
    assert reading.claim("house", study, "release").status_code == 409


def test_an_expired_claim_is_no_longer_shown(short_claims: Reading) -> None:
    reading = short_claims
    study = reading.study("shown")
    expires = datetime.fromisoformat(reading.claim("house", study).json()["claim_expires_at"])
    assert reading.worklist("cuddy")[0]["claimed_by"] == "house"
    reading.clock.advance((expires - reading.clock.now()).total_seconds())
    item = reading.worklist("cuddy")[0]
    assert item["study_instance_uid"] == study.study_instance_uid
    assert item["claimed_by"] is None
    assert reading.uids(reader="house") == []


def test_the_identity_in_the_list_is_the_index_truth(reading: Reading) -> None:
    order = reading.study("identity")
    item = reading.worklist()[0]
    assert PatientIdentifier(PatientId(item["patient_id"]), Issuer(item["issuer"])) == (
        order.patient
    )
