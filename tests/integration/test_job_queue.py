"""The durable job queue through a running node: retries, restarts, dead letters, API, CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StorageCommitmentPushModel,
    StorageCommitmentPushModelInstance,
)
from typer.testing import CliRunner

from pacsflow.app import Pacsflow
from pacsflow.cli import app as cli
from pacsflow.config import DicomPeer
from pacsflow.domain.access import Role
from pacsflow.domain.jobs import JobState
from pacsflow.domain.uids import new_uid
from pacsflow.workflow.commitment import STORAGE_COMMITMENT_JOB
from tests.conftest import make_settings, restamp, storescu
from tests.peers.orthanc import free_port
from tests.waiting import wait_until


class Modality:
    """A modality's storage commitment SCP that can be down, on a fixed port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reports: list[Dataset] = []
        self._server: object = None

    def up(self) -> None:
        ae = AE(ae_title="MODALITY")
        ae.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)

        def on_report(event: evt.Event) -> tuple[int, None]:
            self.reports.append(event.event_information)
            return 0x0000, None

        self._server = ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)],
        )

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()  # type: ignore[attr-defined]
            self._server = None


@pytest.fixture
def modality() -> Iterator[Modality]:
    m = Modality(free_port())
    yield m
    m.down()


def _request_commitment(node: Pacsflow, sop_class: str, sop_uid: str) -> str:
    request = Dataset()
    request.TransactionUID = new_uid()
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_uid
    request.ReferencedSOPSequence = [item]
    scu = AE(ae_title="MODALITY")
    scu.add_requested_context(StorageCommitmentPushModel)
    assoc = scu.associate(
        "127.0.0.1",
        node.dicom.port,
        ae_title="PACSFLOW",
        ext_neg=[build_role(StorageCommitmentPushModel, scu_role=True, scp_role=True)],
    )
    assert assoc.is_established
    status, _ = assoc.send_n_action(
        request, 1, StorageCommitmentPushModel, StorageCommitmentPushModelInstance
    )
    assoc.release()
    assert status.Status == 0x0000
    return str(request.TransactionUID)


def test_a_commitment_report_waits_for_a_down_modality_across_a_restart(
    tmp_path: Path, modality: Modality
) -> None:
    settings = make_settings(
        tmp_path,
        peers=[DicomPeer(ae_title="MODALITY", host="127.0.0.1", port=modality.port)],
        job_retry_base_seconds=0.2,
        job_retry_max_seconds=0.5,
        job_poll_seconds=0.05,
    )
    node = Pacsflow(settings)
    node.start()
    try:
        path, ds = restamp("CT_small.dcm", tmp_path / "c.dcm", patient_id="COMMIT2")
        storescu(node.dicom.port, path)
        transaction = _request_commitment(node, str(ds.SOPClassUID), str(ds.SOPInstanceUID))
        assert wait_until(
            lambda: any(
                j.attempts >= 2 and "cannot reach MODALITY" in j.last_error
                for j in node.jobs.list(kind=STORAGE_COMMITMENT_JOB)
            ),
            timeout=15,
        ), "the report was not retried while the modality was down"
    finally:
        node.stop()
    assert modality.reports == []
    modality.up()
    again = Pacsflow(settings)  # a new process would see the same: the job is in the database
    again.start()
    try:
        assert wait_until(lambda: len(modality.reports) == 1, timeout=15), (
            "the report was lost in the restart"
        )
        [report] = modality.reports
        assert report.TransactionUID == transaction
        assert [i.ReferencedSOPInstanceUID for i in report.ReferencedSOPSequence] == [
            ds.SOPInstanceUID
        ]
        [job] = again.jobs.list(kind=STORAGE_COMMITMENT_JOB)
        assert wait_until(lambda: again.jobs.get(job.id).state is JobState.DONE, timeout=15)
    finally:
        again.stop()
    assert len(modality.reports) == 1  # delivered once


def test_dead_letters_are_listed_and_replayed_over_the_api_and_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MODALITY is not a configured peer: its report has no address, so it is dead-lettered.
    settings = make_settings(tmp_path, job_poll_seconds=0.05, dicom_open=True)
    node = Pacsflow(settings)
    node.start()
    try:
        _request_commitment(node, "1.2.840.10008.5.1.4.1.1.2", new_uid())
        assert wait_until(lambda: bool(node.jobs.list(state=JobState.DEAD)), timeout=15)
        admin = node.accounts.create_user("ops", [Role.ADMIN])
        token = node.accounts.create_token(admin.username, "t", None)
        base = f"http://127.0.0.1:{node.http.port}"
        headers = {"Authorization": f"Bearer {token}"}
        dead = httpx.get(f"{base}/api/jobs", params={"state": "dead"}, headers=headers).json()
        assert [(j["kind"], j["attempts"]) for j in dead] == [(STORAGE_COMMITMENT_JOB, 1)]
        assert "not a configured peer" in dead[0]["last_error"]
        stats = httpx.get(f"{base}/api/jobs/stats", headers=headers).json()
        assert stats["by_state"] == {"dead": 1}
        assert stats["failing_destinations"] == {"MODALITY": 1}
        job_id = dead[0]["id"]
        replayed = httpx.post(f"{base}/api/jobs/{job_id}/replay", headers=headers)
        assert replayed.status_code == 200, replayed.text
        assert replayed.json()["attempts"] == 0
        assert wait_until(lambda: node.jobs.get(job_id).state is JobState.DEAD, timeout=15)
        again = httpx.post(f"{base}/api/jobs/{job_id}/replay", headers=headers)
        assert again.status_code == 200
        missing = httpx.post(f"{base}/api/jobs/999999/replay", headers=headers)
        assert missing.status_code == 404
        assert missing.json()["detail"] == "no job 999999"
    finally:
        node.stop()
    # The CLI works on the same database while the node is down.
    for key in ("data_dir", "fast_hashing_for_tests"):
        monkeypatch.setenv(f"PACSFLOW_{key.upper()}", str(getattr(settings, key)))
    runner = CliRunner()
    listed = runner.invoke(cli, ["jobs", "list", "--state", "dead"])
    assert listed.exit_code == 0, listed.output
    assert STORAGE_COMMITMENT_JOB in listed.output
    assert "not a configured peer" in listed.output
    replay_all = runner.invoke(cli, ["jobs", "replay", "--all-dead"])
    assert replay_all.exit_code == 0, replay_all.output
    assert "replayed 1 dead-lettered job(s)" in replay_all.output
    stats = runner.invoke(cli, ["jobs", "stats"])
    assert "depth (pending + running): 1" in stats.output
    wrong = runner.invoke(cli, ["jobs", "replay", "1"])
    assert wrong.exit_code == 1
    assert "only dead-lettered jobs are replayed" in wrong.output
