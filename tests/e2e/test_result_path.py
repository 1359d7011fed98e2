"""End-to-end: the result rail through `pacsflow serve`, from the order to the EHR.

An order comes in over MLLP (ORM^O01 NW), its image by DCMTK storescu, then a preliminary
and a final report (ORU^R01, OBR-25 P then F). A subscriber configured in the node's TOML
file, the test's EHR (an MLLP peer on loopback), gets "images available" (ORM^O01, ORC-1 SC)
once the study is published, then the two reports. All three share one ordering key
(subscriber and study) and the ORM is enqueued when the study is published, before any
report can attach, so the EHR sees ORM, ORU P, ORU F in that order. A second run takes the
EHR down before the final report, kills the node (SIGKILL) while the delivery waits to be
retried, starts it again on the same data directory and brings the EHR back: the final
report arrives once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pacsflow.adapters.hl7.codec import parse
from tests.conftest import requires_dcmtk, restamp, storescu
from tests.e2e.conftest import Node, free_port
from tests.e2e.test_workflow_paths import ORM
from tests.integration.test_result_rail import Ehr
from tests.waiting import wait_until

pytestmark = [pytest.mark.dcmtk, requires_dcmtk]

ACCESSION = "ACC1001"  # the one in ORM, as are the patient's identity and demographics
IMPRESSION = "Impression: no acute finding."


def _oru(status: str, text: str, control: str) -> str:
    """A report version for ACC1001 (ORU^R01, OBR-25 status, two lines of text)."""
    return (
        f"MSH|^~\\&|RIS|HOSP|PACSFLOW|RAD|20261128120000||ORU^R01^ORU_R01|{control}|P|2.5.1"
        "||||||UNICODE UTF-8\r"
        "PID|1||12345^^^HOSP^MR||Dvořák^Antonín||19700102|M\r"
        f"OBR|1|PL1001|RPT1001|CTCHEST^CT chest^L|||20261128115500|||||||||||{ACCESSION}"
        f"|||||||{status}|||||||1234&House&Gregory\r"
        f"OBX|1|TX|GDT^Report||{text}||||||{status}\r"
        f"OBX|2|TX|GDT^Report||{IMPRESSION}||||||{status}\r"
    )


def _msa(ack: str) -> tuple[str, str]:
    """MSA-1 and MSA-2 of an acknowledgement."""
    m = parse(ack.encode())
    return m.get("MSA-1"), m.get("MSA-2")


def _received(ehr: Ehr) -> list[tuple[str, str, str]]:
    """What the EHR got, in order: (MSH-9.1, ORC-1 or OBR-25, OBR-18)."""
    found = []
    for raw in list(ehr.received):
        m = parse(raw)
        kind = m.get("MSH-9.1")
        found.append((kind, m.get("ORC-1" if kind == "ORM" else "OBR-25"), m.get("OBR-18")))
    return found


class EhrNode(Node):
    """`pacsflow serve` with the EHR as result subscriber, and its delivery bookkeeping."""

    def deliveries(self) -> dict[str, Any]:
        [stats] = self.get("/api/results/deliveries")
        assert stats["subscriber"] == "EHR"
        return dict(stats)

    def delivery_jobs(self) -> list[dict[str, Any]]:
        return list(self.get("/api/jobs", kind="deliver_result", limit="100"))

    def jobs_done(self) -> bool:
        """Every delivery job has finished (its ACK recorded and the job committed)."""
        return all(j["state"] == "done" for j in self.delivery_jobs())


def _settings(ehr_port: int) -> str:
    """The node's TOML settings after the ports: fast job retries and the EHR as subscriber."""
    # Fast polling and retries keep a down EHR's backlog moving within seconds; a 2 s
    # lease lets the restarted node take over a job the killed one held.
    return f"""job_lease_seconds = 2
job_max_attempts = 50
job_poll_seconds = 0.05
job_retry_base_seconds = 0.2
job_retry_max_seconds = 1
fast_hashing_for_tests = true

[[result_subscribers]]
name = "EHR"
host = "127.0.0.1"
port = {ehr_port}
receiving_application = "EPIC"
receiving_facility = "MAIN"
events = ["report", "images_available"]
timeout_seconds = 1
"""


@pytest.fixture
def ehr() -> Iterator[Ehr]:
    peer = Ehr(free_port())
    peer.up()
    try:
        yield peer
    finally:
        peer.down()


@pytest.fixture
def node(tmp_path: Path, ehr: Ehr) -> Iterator[EhrNode]:
    n = EhrNode(tmp_path)
    n.write_config(_settings(ehr.port))
    n.create_token("e2e", "admin", "result rail e2e")
    try:
        yield n
    finally:
        n.stop()


def _order_and_image(node: EhrNode, tmp_path: Path) -> str:
    """The ORM^O01 NW, then its image as the modality sends it; the Study Instance UID."""
    [ack] = node.send_hl7(ORM)
    assert _msa(ack) == ("AA", "ORM0001")
    path, ds = restamp(
        "CT_small.dcm",
        tmp_path / "ct.dcm",
        patient_id="12345",
        issuer="HOSP",
        accession=ACCESSION,
        name_pn="Dvořák^Antonín",
        birth="19700102",
        sex="M",
    )
    res = storescu(node.dicom_port, path)
    assert res.returncode == 0, res.stdout + res.stderr
    [study] = node.get("/api/studies")
    assert study["state"] == "published"
    assert study["study_instance_uid"] == ds.StudyInstanceUID
    return str(ds.StudyInstanceUID)


def test_order_image_reports_reach_the_ehr_in_order_and_are_counted(
    node: EhrNode, ehr: Ehr, tmp_path: Path
) -> None:
    node.start()
    study_uid = _order_and_image(node, tmp_path)
    acks = node.send_hl7(
        _oru("P", "Preliminary: small nodule.", "ORU0001"),
        _oru("F", "Final: 4 mm nodule, benign.", "ORU0002"),
    )
    assert [_msa(a) for a in acks] == [("AA", "ORU0001"), ("AA", "ORU0002")]

    assert wait_until(lambda: len(ehr.received) >= 3, timeout=15), _received(ehr)
    assert _received(ehr) == [
        ("ORM", "SC", ACCESSION),
        ("ORU", "P", ACCESSION),
        ("ORU", "F", ACCESSION),
    ]
    orm, *orus = (parse(raw) for raw in ehr.received)
    assert [orm.get(f"MSH-{n}") for n in (5, 6, 18)] == ["EPIC", "MAIN", "UNICODE UTF-8"]
    assert (orm.get("ORC-5"), orm.get("ZDS-1")) == ("CM", study_uid)
    texts = ["Preliminary: small nodule.", "Final: 4 mm nodule, benign."]
    for oru, text in zip(orus, texts, strict=True):
        assert [oru.get(f) for f in ("PID-3", "PID-3.4", "PID-5")] == ["12345", "HOSP", "Dvořák"]
        assert [oru.get(f"OBR-{n}") for n in (2, 3, 4)] == ["PL1001", "RPT1001", "CTCHEST"]
        [uid_obx, *text_obx] = oru.segments_named("OBX")
        assert (uid_obx.get(3), uid_obx.get(5)) == ("113014", study_uid)
        assert [s.get(5) for s in text_obx] == [text, IMPRESSION]

    reports = node.get(f"/api/studies/{study_uid}/reports")
    assert reports["report_status"] == "final"
    versions = [(v["status"], v["text"], v["radiologist"]) for v in reports["versions"]]
    assert versions == [
        ("preliminary", f"{texts[0]}\n{IMPRESSION}", "House Gregory"),
        ("final", f"{texts[1]}\n{IMPRESSION}", "House Gregory"),
    ]
    assert {(v["attached_study_uid"], v["flag"]) for v in reports["versions"]} == {(study_uid, "")}

    assert wait_until(lambda: node.deliveries()["delivered"] == 3, timeout=15), node.deliveries()
    stats = node.deliveries()
    assert (stats["total"], stats["failed"], stats["pending"]) == (3, 0, 0)
    assert (stats["delivered_in_time"], stats["success_rate"]) == (3, 1.0)
    assert wait_until(node.jobs_done, timeout=15), node.delivery_jobs()
    assert len(ehr.received) == 3  # nothing delivered twice


def test_a_final_report_queued_while_the_ehr_is_down_survives_kill_9_and_arrives_once(
    node: EhrNode, ehr: Ehr, tmp_path: Path
) -> None:
    node.start()
    study_uid = _order_and_image(node, tmp_path)
    [ack] = node.send_hl7(_oru("P", "Preliminary: small nodule.", "ORU0001"))
    assert _msa(ack) == ("AA", "ORU0001")
    assert wait_until(lambda: node.deliveries()["delivered"] == 2, timeout=15), node.deliveries()
    assert _received(ehr) == [("ORM", "SC", ACCESSION), ("ORU", "P", ACCESSION)]

    ehr.down()
    [ack] = node.send_hl7(_oru("F", "Final: 4 mm nodule, benign.", "ORU0002"))
    assert _msa(ack) == ("AA", "ORU0002")  # kept: the EHR being down is the queue's business

    def final_job() -> dict[str, Any]:
        return max(node.delivery_jobs(), key=lambda j: int(j["id"]))  # the newest

    assert wait_until(lambda: final_job()["attempts"] >= 2, timeout=15), final_job()
    assert final_job()["state"] in ("pending", "running")
    assert "cannot connect" in final_job()["last_error"]
    node.kill()

    node.start()  # same data directory, same ports; the EHR is still down
    attempts_before = final_job()["attempts"]
    assert wait_until(lambda: final_job()["attempts"] > attempts_before, timeout=15), final_job()
    assert node.get(f"/api/studies/{study_uid}/reports")["report_status"] == "final"
    ehr.up()

    assert wait_until(lambda: len(ehr.received) >= 3, timeout=15), node.delivery_jobs()
    assert wait_until(node.jobs_done, timeout=15), node.delivery_jobs()
    assert _received(ehr) == [
        ("ORM", "SC", ACCESSION),
        ("ORU", "P", ACCESSION),
        ("ORU", "F", ACCESSION),
    ]
    assert [m.get("OBX-5", occurrence=1) for m in map(parse, ehr.received[1:])] == [
        "Preliminary: small nodule.",
        "Final: 4 mm nodule, benign.",
    ]
    stats = node.deliveries()
    assert (stats["delivered"], stats["failed"], stats["pending"]) == (3, 0, 0)
