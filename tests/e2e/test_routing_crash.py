"""kill -9 of `pacsflow serve` during forwarding loses nothing.

Orders come in over MLLP, a modality stores their images (C-STORE), a routing rule forwards
every CT to Orthanc through the job queue. The images arrive while the node runs no job
worker, so a backlog of forwarding is waiting when it restarts with one; it is killed
(SIGKILL) while some but not all instances are at Orthanc, then started again on the same
data directory: every instance pacsflow accepted reaches Orthanc once, and no job is left
dead or stuck. Delivery is at least once: a forward job killed between Orthanc's 0x0000 and
its own commit runs again once its lease (2 s here) runs out and sends that instance again,
which Orthanc, like any archive, keeps once (same SOP Instance UID).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from pacsflow.domain.uids import new_uid
from tests.conftest import restamp
from tests.e2e.conftest import Node
from tests.integration.test_routing_orthanc import CT_TO_ORTHANC
from tests.peers.orthanc import OrthancPeer
from tests.waiting import wait_until

pytestmark = [pytest.mark.orthanc]

STUDIES = 2
PER_STUDY = 20


def _orm(n: int) -> str:
    """A new order (ORM^O01) for patient 12345^^^HOSP, accession ACC20nn."""
    return (
        f"MSH|^~\\&|RIS|HOSP|PACSFLOW|RAD|20261128090100||ORM^O01|ORM20{n:02d}|P|2.3.1"
        "||||||UNICODE UTF-8\r"
        "PID|1||12345^^^HOSP^MR||Dvořák^Antonín||19700102|M\r"
        "PV1|1|O||||||5678^WELBY^MARCUS\r"
        f"ORC|NW|PL20{n:02d}|FL20{n:02d}||SC\r"
        f"OBR|1|PL20{n:02d}|FL20{n:02d}|CTCHEST^CT chest^L||||||||||||||ACC20{n:02d}"
        f"|RP20{n:02d}|SPS20{n:02d}||||CT|||^^^20261128093000^^S\r"
    )


# One worker and one job at a time toward Orthanc keep forwarding slow enough to be caught
# in the middle; a 2 s lease lets the restarted node take the killed one's job.
_SETTINGS = """job_workers = 1
job_lease_seconds = 2
job_poll_seconds = 0.05
job_retry_base_seconds = 0.2
job_retry_max_seconds = 1
fast_hashing_for_tests = true

[[peers]]
ae_title = "ORTHANC"
host = "127.0.0.1"
port = {orthanc_port}
max_concurrent_jobs = 1
"""


@pytest.fixture
def node(tmp_path: Path, orthanc: OrthancPeer) -> Iterator[Node]:
    n = Node(tmp_path)
    n.write_config(_SETTINGS.format(orthanc_port=orthanc.dicom_port))
    n.create_token("ops", "admin", "crash test")
    try:
        yield n
    finally:
        n.stop()


def _images(tmp: Path) -> list[Dataset]:
    """STUDIES studies of PER_STUDY CT images, each study carrying its order's identifiers."""
    images = []
    for n in range(STUDIES):
        study_uid = new_uid()
        for i in range(PER_STUDY):
            _, ds = restamp(
                "CT_small.dcm",
                tmp / f"ct-{n}-{i}.dcm",
                patient_id="12345",
                accession=f"ACC20{n:02d}",
                study_uid=study_uid,
                name_pn="Dvořák^Antonín",
                issuer="HOSP",
                birth="19700102",
                sex="M",
            )
            images.append(ds)
    return images


def _store(port: int, images: list[Dataset]) -> list[str]:
    """C-STORE the images on one association; the SOP Instance UIDs answered with 0x0000."""
    ae = AE(ae_title="CT01")
    ae.add_requested_context(CTImageStorage, images[0].file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="PACSFLOW")
    assert assoc.is_established
    accepted = []
    try:
        for ds in images:
            status = assoc.send_c_store(ds)
            if status and status.Status == 0x0000:
                accepted.append(str(ds.SOPInstanceUID))
    finally:
        assoc.release()
    return accepted


def test_kill_9_during_forwarding_loses_nothing(
    node: Node, orthanc: OrthancPeer, tmp_path: Path
) -> None:
    node.start(job_workers="0")  # nothing is forwarded yet: the jobs wait in the queue
    acks = node.send_hl7(*(_orm(n) for n in range(STUDIES)))
    assert all("MSA|AA|" in ack for ack in acks), acks
    saved = node.api(
        "POST", "/api/routing/versions", json={"text": CT_TO_ORTHANC, "activate": True}
    )
    assert saved["is_active"] is True
    images = _images(tmp_path / "images")
    accepted = _store(node.dicom_port, images)
    assert len(accepted) == len(images)
    node.stop()

    node.start()  # one worker, one job at a time toward Orthanc
    assert wait_until(lambda: orthanc.count_instances() >= 3, timeout=15, interval=0.02), node.api(
        "GET", "/api/jobs"
    )
    node.kill()
    at_kill = orthanc.count_instances()
    assert 0 < at_kill < len(accepted), "the kill came too late to interrupt forwarding"

    node.start()  # same data directory, same ports
    assert wait_until(
        lambda: orthanc.count_instances() >= len(accepted), timeout=15, interval=0.02
    ), node.api("GET", "/api/jobs", params={"state": "pending"})

    def settled() -> bool:
        jobs = node.api("GET", "/api/jobs", params={"limit": 5000})
        return all(j["state"] in ("done", "dead") for j in jobs)

    assert wait_until(settled, timeout=10, interval=0.02), node.api(
        "GET", "/api/jobs", params={"state": "running"}
    )
    jobs = node.api("GET", "/api/jobs", params={"limit": 5000})
    assert [j for j in jobs if j["state"] != "done"] == []
    assert sorted({j["kind"] for j in jobs}) == ["forward", "route_instance"]

    # Every accepted instance is at Orthanc, once, and pacsflow knows it was sent.
    assert orthanc.instances() == sorted(accepted)
    assert orthanc.count_instances() == len(accepted)
    forwards: list[tuple[str, str, str]] = []
    for study_uid in {str(ds.StudyInstanceUID) for ds in images}:
        forwards += [
            (f["sop_instance_uid"], f["destination"], f["state"])
            for f in node.api("GET", f"/api/studies/{study_uid}/forwards")
        ]
    assert sorted(forwards) == sorted((uid, "ORTHANC", "sent") for uid in accepted)
