"""Routing to a real Orthanc: rules over the API, real-time forwarding, dry-run, rollback,
and a destination that is down for a while."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from pacsflow.app import Pacsflow
from pacsflow.config import DicomPeer
from pacsflow.domain.access import Role
from pacsflow.domain.audit import ActiveParticipant
from pacsflow.domain.jobs import JobState
from pacsflow.domain.uids import Uid
from pacsflow.workflow.routing import FORWARD_JOB
from tests.conftest import make_settings, requires_dcmtk
from tests.fakes import RunningClock
from tests.peers.orthanc import OrthancPeer, running_orthanc
from tests.scheduling import send_scheduled
from tests.waiting import wait_settled, wait_until

pytestmark = [pytest.mark.orthanc, pytest.mark.dcmtk, requires_dcmtk]

CT_TO_ORTHANC = """
rules:
  - name: ct-to-orthanc
    description: every CT instance goes to the archive as it arrives
    when: {Modality: CT}
    send_to: [ORTHANC]
"""

MR_ONLY = """
rules:
  - name: mr-to-orthanc
    when: {Modality: MR}
    send_to: [ORTHANC]
"""


@dataclass
class Routed:
    node: Pacsflow
    orthanc: OrthancPeer
    http: httpx.Client
    tmp: Path

    def save(self, text: str, *, activate: bool = True, comment: str = "") -> dict[str, Any]:
        r = self.http.post(
            "/api/routing/versions", json={"text": text, "activate": activate, "comment": comment}
        )
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body

    def send_scheduled(self, sample: str, name: str) -> str:
        """A study that matches its order (so it is published); its SOP Instance UID."""
        return send_scheduled(self.node, self.tmp, sample, name)[0]


@pytest.fixture
def routed(tmp_path: Path, orthanc: OrthancPeer, clock: RunningClock) -> Iterator[Routed]:
    settings = make_settings(
        tmp_path,
        peers=[DicomPeer(ae_title="ORTHANC", host="127.0.0.1", port=orthanc.dicom_port)],
        job_poll_seconds=0.05,
        job_retry_base_seconds=0.2,
        job_retry_max_seconds=0.5,
        job_max_attempts=100,
    )
    node = Pacsflow(settings, clock)
    node.start()
    node.accounts.create_user("ops", [Role.ADMIN])
    token = node.accounts.create_token("ops", "routing tests", None)
    with httpx.Client(
        base_url=f"http://127.0.0.1:{node.http.port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ) as client:
        try:
            yield Routed(node, orthanc, client, tmp_path)
        finally:
            node.stop()


def test_a_rule_sends_ct_to_orthanc_and_nothing_else(routed: Routed) -> None:
    version = routed.save(CT_TO_ORTHANC, comment="CT to the archive")
    assert (version["version"], version["is_active"], version["author"]) == (1, True, "ops")
    ct = routed.send_scheduled("CT_small.dcm", "ct")
    mr = routed.send_scheduled("MR_small.dcm", "mr")
    assert wait_until(lambda: ct in routed.orthanc.instances()), routed.node.jobs.list()
    study = routed.node.queries.instances(sop_uids=[ct])[0].study_instance_uid  # type: ignore[list-item]

    def forwards() -> list[tuple[str, str]]:
        found = routed.http.get(f"/api/studies/{study}/forwards").json()
        return [(f["destination"], f["state"]) for f in found]

    assert wait_until(lambda: forwards() == [("ORTHANC", "sent")]), forwards()
    wait_settled(routed.node)  # the MR's routing job is done: a wrong forward would be too
    assert mr not in routed.orthanc.instances()
    assert routed.orthanc.count_instances() == 1


def test_a_dry_run_shows_what_a_candidate_changes_and_sends_nothing(routed: Routed) -> None:
    routed.save(CT_TO_ORTHANC)
    ct = routed.send_scheduled("CT_small.dcm", "ct")
    assert wait_until(lambda: ct in routed.orthanc.instances())
    mr = routed.send_scheduled("MR_small.dcm", "mr")
    wait_settled(routed.node)
    before = routed.orthanc.count_instances()
    jobs_before = routed.node.jobs.list(limit=1000)
    now = routed.node.clock.now()
    r = routed.http.post(
        "/api/routing/dry-run",
        json={
            "text": MR_ONLY,
            "since": (now - timedelta(hours=1)).replace(tzinfo=None).isoformat(),  # naive: UTC
            "until": (now + timedelta(minutes=1)).isoformat(),
        },
    )
    assert r.status_code == 200, r.text
    rows = {(row["active"] and "ct") or "mr": row for row in r.json()}
    assert rows["ct"]["active"] == ["ORTHANC"]
    assert rows["ct"]["candidate"] == []
    assert rows["ct"]["removed"] == ["ORTHANC"]
    assert rows["mr"]["active"] == []
    assert rows["mr"]["added"] == ["ORTHANC"]
    assert all(row["changed"] for row in r.json())
    assert routed.node.jobs.list(limit=1000) == jobs_before  # the dry run queued nothing
    assert routed.orthanc.count_instances() == before
    assert mr not in routed.orthanc.instances()
    assert [v["version"] for v in routed.http.get("/api/routing/versions").json()] == [1]


def test_a_rollback_restores_the_previous_routing(routed: Routed) -> None:
    routed.save(CT_TO_ORTHANC)
    routed.save(MR_ONLY)
    diff = routed.http.get("/api/routing/diff", params={"old": 1, "new": 2}).json()["diff"]
    assert "-      Modality: {equals: CT}\n+      Modality: {equals: MR}\n" in diff
    ct_under_v2 = routed.send_scheduled("CT_small.dcm", "ct2")
    wait_settled(routed.node)  # routed (nowhere) by v2
    assert ct_under_v2 not in routed.orthanc.instances()
    r = routed.http.post("/api/routing/rollback")
    assert r.status_code == 200, r.text
    assert (r.json()["version"], r.json()["is_active"]) == (1, True)
    ct_under_v1 = routed.send_scheduled("CT_small.dcm", "ct1")
    assert wait_until(lambda: ct_under_v1 in routed.orthanc.instances())
    assert ct_under_v2 not in routed.orthanc.instances()  # routed by v2 when it arrived


def test_with_orthanc_down_forwarding_retries_and_completes_when_it_is_back(
    routed: Routed,
) -> None:
    routed.save(CT_TO_ORTHANC)
    routed.orthanc.stop()
    sent = [routed.send_scheduled("CT_small.dcm", f"ct{n}") for n in range(3)]

    def retrying() -> bool:
        # One forward job per destination at a time, not one per instance: instances routed
        # while it is running (on a slow machine, the first one's retries have begun) wait in
        # one more job behind it (same ordering key), so there are never three.
        jobs = routed.node.jobs.list(kind=FORWARD_JOB)
        return 1 <= len(jobs) <= 2 and any(
            j.attempts >= 2 and "cannot reach ORTHANC" in j.last_error for j in jobs
        )

    assert wait_until(retrying), [(j.attempts, j.last_error) for j in routed.node.jobs.list()]
    routed.orthanc.start()
    assert wait_until(lambda: set(sent) <= set(routed.orthanc.instances()), timeout=30)
    assert wait_until(
        lambda: all(j.state is JobState.DONE for j in routed.node.jobs.list(kind=FORWARD_JOB))
    )
    assert routed.orthanc.count_instances() == 3


def test_bad_rules_are_refused_with_the_reason(routed: Routed) -> None:
    r = routed.http.post(
        "/api/routing/versions",
        json={"text": "rules:\n  - name: x\n    send_to: [NOWHERE]\n"},
    )
    assert r.status_code == 400
    assert "NOWHERE" in r.json()["detail"]
    r = routed.http.post("/api/routing/versions", json={"text": "rules: [ {name: x"})
    assert r.status_code == 400
    assert routed.http.get("/api/routing/versions").json() == []


def test_a_rule_sends_to_a_dicomweb_endpoint_by_stow_rs(
    tmp_path: Path, clock: RunningClock
) -> None:
    with running_orthanc(tmp_path / "web", aet="WEBPACS", dicomweb=True) as web:
        settings = make_settings(
            tmp_path,
            dicomweb_destinations=[
                {"name": "WEBPACS", "url": f"http://127.0.0.1:{web.http_port}/dicom-web"}
            ],
            job_poll_seconds=0.05,
        )
        node = Pacsflow(settings, clock)
        node.start()
        try:
            rules = "rules:\n  - name: mr-web\n    when: {Modality: MR}\n    send_to: [WEBPACS]\n"
            node.routing.save(rules, ActiveParticipant("ops", is_requestor=True), activate=True)
            routed = Routed(node, web, httpx.Client(), tmp_path)
            mr = routed.send_scheduled("MR_small.dcm", "mr")
            ct = routed.send_scheduled("CT_small.dcm", "ct")
            assert wait_until(lambda: mr in web.instances()), node.jobs.list()
            study = node.queries.instances(sop_uids=[Uid(mr)])[0].study_instance_uid
            assert wait_until(
                lambda: (
                    [(d, s) for _, d, s, _ in node.routing.forwards(study)] == [("WEBPACS", "sent")]
                )
            )
            wait_settled(node)  # the CT's routing job is done: a wrong forward would be too
            assert ct not in web.instances()
        finally:
            node.stop()


def test_a_forwarded_study_sent_back_is_stored_once_and_raises_an_alert(routed: Routed) -> None:
    routed.save(CT_TO_ORTHANC)
    ct = routed.send_scheduled("CT_small.dcm", "ct")
    assert wait_until(lambda: ct in routed.orthanc.instances())
    routed.orthanc.add_modality("PACSFLOW", "PACSFLOW", "127.0.0.1", routed.node.dicom.port)
    [orthanc_id] = routed.orthanc.rest_post(
        "/tools/find", {"Level": "Instance", "Query": {"SOPInstanceUID": ct}}
    )
    routed.orthanc.rest_post("/modalities/PACSFLOW/store", orthanc_id)  # Orthanc sends it back
    alerts = routed.http.get("/api/alerts")
    assert wait_until(lambda: bool(routed.http.get("/api/alerts").json())), alerts.text
    [alert] = routed.http.get("/api/alerts").json()
    assert (alert["kind"], alert["peer"], alert["count"]) == ("returned", "ORTHANC", 1)
    assert "came back from ORTHANC" in alert["detail"]
    assert len(routed.node.queries.instances(sop_uids=[Uid(ct)])) == 1
    wait_settled(routed.node)  # the returned copy's jobs are done
    assert routed.orthanc.count_instances() == 1  # not forwarded again: the loop stops
    assert [j.kind for j in routed.node.jobs.list(kind=FORWARD_JOB)] == [FORWARD_JOB]


STABLE_CT = """
rules:
  - name: whole-ct-studies
    trigger: study_stable
    when: {ModalitiesInStudy: CT}
    send_to: [ORTHANC]
"""


def test_mpps_completed_makes_a_study_stable_at_once(routed: Routed) -> None:
    from pydicom.dataset import Dataset
    from pynetdicom import AE
    from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]

    from pacsflow.domain.uids import new_uid

    routed.save(STABLE_CT)  # routing_stable_seconds is 60 here: without MPPS it would wait
    sop, order = send_scheduled(routed.node, routed.tmp, "CT_small.dcm", "ct")
    wait_settled(routed.node)  # all that is left is the study's routing, due in 60 s
    [waiting] = routed.node.jobs.list(state=JobState.PENDING)
    assert waiting.run_at - routed.node.clock.now() > timedelta(seconds=30)
    assert sop not in routed.orthanc.instances()
    ae = AE(ae_title="CT01")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", routed.node.dicom.port, ae_title="PACSFLOW")
    assert assoc.is_established
    try:
        step = new_uid()
        attrs, ref = Dataset(), Dataset()
        ref.AccessionNumber = order.accession_number
        ref.StudyInstanceUID = order.study_instance_uid
        attrs.ScheduledStepAttributesSequence = [ref]
        attrs.PerformedProcedureStepStatus = "IN PROGRESS"
        assert assoc.send_n_create(attrs, ModalityPerformedProcedureStep, step)[0].Status == 0
        done = Dataset()
        done.PerformedProcedureStepStatus = "COMPLETED"
        assert assoc.send_n_set(done, ModalityPerformedProcedureStep, step)[0].Status == 0
    finally:
        assoc.release()
    assert wait_until(lambda: sop in routed.orthanc.instances(), timeout=15), (
        routed.node.jobs.list()
    )
