"""The result rail: reports in (ORU^R01 over MLLP, HTTP), attached to studies, delivered in
order to an EHR that may answer AA, AE, nothing at all, or be down; across a restart."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pacsflow.adapters.hl7.codec import parse
from pacsflow.adapters.hl7.mllp import MllpClient, frame
from pacsflow.app import Pacsflow
from pacsflow.config import ResultSubscriber, Settings
from pacsflow.domain.access import Role
from pacsflow.domain.jobs import JobState
from pacsflow.domain.orders import Order
from pacsflow.domain.uids import Uid
from pacsflow.workflow.results import DELIVER_RESULT_JOB
from tests.conftest import make_settings, requires_dcmtk
from tests.fakes import RunningClock
from tests.peers.orthanc import free_port
from tests.scheduling import send_scheduled
from tests.waiting import wait_settled, wait_until

pytestmark = [pytest.mark.dcmtk, requires_dcmtk]

SB, EB = b"\x0b", b"\x1c\x0d"


class Ehr:
    """An MLLP peer playing the EHR: records what it gets, answers as told, or is down."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.mode = "AA"  # AA | AE | silent
        self.received: list[bytes] = []
        self._server: socketserver.ThreadingTCPServer | None = None

    def up(self) -> None:
        ehr = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                buffer = b""
                while True:
                    try:
                        data = self.request.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    buffer += data
                    while SB in buffer and EB in buffer:
                        start = buffer.index(SB)
                        end = buffer.index(EB, start)
                        message, buffer = buffer[start + 1 : end], buffer[end + 2 :]
                        if ehr.mode == "silent":
                            continue
                        control = parse(message).get("MSH-10")
                        ehr.received.append(message)
                        code = ehr.mode
                        text = "unknown patient" if code == "AE" else ""
                        ack = (
                            f"MSH|^~\\&|EHR|HOSP|PACSFLOW|PACSFLOW|20261129||ACK|A{control}|P|2.5.1\r"
                            f"MSA|{code}|{control}|{text}\r"
                        )
                        self.request.sendall(frame(ack.encode()))

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def messages(self, kind: str = "ORU") -> list[tuple[str, str, str]]:
        """(accession OBR-18, result status OBR-25, first text line) of each message of kind."""
        found = []
        for raw in self.received:
            m = parse(raw)
            if m.get("MSH-9.1") != kind:
                continue
            texts = [s.get(5) for s in m.segments_named("OBX") if s.get(2) == "TX"]
            found.append((m.get("OBR-18"), m.get("OBR-25"), texts[0] if texts else ""))
        return found


@pytest.fixture
def ehr() -> Iterator[Ehr]:
    peer = Ehr(free_port())
    peer.up()
    yield peer
    peer.down()


def _settings(tmp_path: Path, ehr: Ehr) -> Settings:
    return make_settings(
        tmp_path,
        result_subscribers=[
            ResultSubscriber(
                name="EHR",
                host="127.0.0.1",
                port=ehr.port,
                events=["report", "images_available"],
                timeout_seconds=1,
            )
        ],
        job_poll_seconds=0.05,
        job_retry_base_seconds=0.2,
        job_retry_max_seconds=0.5,
        job_max_attempts=50,
    )


@pytest.fixture
def node_with_ehr(tmp_path: Path, ehr: Ehr, clock: RunningClock) -> Iterator[Pacsflow]:
    node = Pacsflow(_settings(tmp_path, ehr), clock)
    node.start()
    yield node
    node.stop()


def oru(order: Order, status: str, text: str, control: str) -> bytes:
    return (
        f"MSH|^~\\&|RIS|HOSP|PACSFLOW|HOSP|20261129120000||ORU^R01^ORU_R01|{control}|P|2.5.1\r"
        f"PID|1||{order.patient.value}^^^{order.patient.issuer}||Dvořák^Antonín\r"
        f"OBR|1||R{order.accession_number}|CTCHEST^CT chest^L|||20261129115500"
        f"|||||||||||{order.accession_number}|||||||{status}|||||||1234&House&Gregory\r"
        f"OBX|1|TX|GDT^Report||{text}||||||{status}\r"
        f"OBX|2|TX|GDT^Report||Impression: normal.||||||{status}\r"
    ).encode()


def _send_hl7(node: Pacsflow, message: bytes) -> str:
    with MllpClient("127.0.0.1", node.hl7.port, 10) as client:
        return parse(client.send(message)).get("MSA-1")


def test_reports_over_mllp_reach_the_ehr_in_order_and_set_the_study_status(
    node_with_ehr: Pacsflow, ehr: Ehr, tmp_path: Path
) -> None:
    node = node_with_ehr
    _, order = send_scheduled(node, tmp_path, "CT_small.dcm", "ct")
    for n, status in enumerate(["P", "F", "C"]):
        assert _send_hl7(node, oru(order, status, f"version {status}", f"C{n}")) == "AA"
    acc = str(order.accession_number)
    assert wait_until(lambda: len(ehr.messages()) == 3), ehr.messages()
    assert ehr.messages() == [
        (acc, "P", "version P"),
        (acc, "F", "version F"),
        (acc, "C", "version C"),
    ]
    assert ehr.messages("ORM") == [(acc, "", "")]  # images available, once
    study = Uid(str(order.study_instance_uid))
    assert node.results.status_of(study).value == "corrected"

    def settled() -> bool:
        [stats] = node.results.delivery_stats()
        return (stats.delivered, stats.failed, stats.pending) == (4, 0, 0)

    assert wait_until(settled), node.results.delivery_stats()
    assert node.results.delivery_stats()[0].success_rate == 1.0


def test_a_report_before_its_study_is_kept_flagged_and_attaches_when_the_study_arrives(
    node_with_ehr: Pacsflow, ehr: Ehr, tmp_path: Path
) -> None:
    node = node_with_ehr
    node.accounts.create_user("ris", [Role.INTEGRATION])
    token = node.accounts.create_token("ris", "t", None)
    from tests.scheduling import scheduled

    _, order = scheduled(node)
    r = httpx.post(
        f"http://127.0.0.1:{node.http.port}/api/reports",
        json={"accession_number": order.accession_number, "status": "F", "text": "early"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["attached_study_uid"] is None
    assert "no study" in r.json()["flag"]
    wait_settled(node)  # what the report started is done: nothing went out
    assert ehr.messages() == []
    # The study arrives (matching the order): the report attaches and is delivered.
    from pacsflow.domain import commands as cmd  # noqa: F401 - keeps the import style local
    from tests.conftest import restamp, storescu

    path, _ = restamp(
        "CT_small.dcm",
        tmp_path / "late.dcm",
        patient_id=str(order.patient.value),
        accession=str(order.accession_number),
        study_uid=str(order.study_instance_uid),
        name_pn="Dvořák^Antonín",
        issuer="HOSP",
        birth="19700102",
        sex="M",
    )
    storescu(node.dicom.port, path)
    assert wait_until(lambda: ehr.messages() == [(str(order.accession_number), "F", "early")])
    [record] = node.results.reports_of(Uid(str(order.study_instance_uid)))
    assert (record.flag, record.source) == ("", "api:ris")


def test_an_ae_from_the_ehr_fails_the_delivery_with_its_reason_and_replay_delivers_it(
    node_with_ehr: Pacsflow, ehr: Ehr, tmp_path: Path
) -> None:
    node = node_with_ehr
    ehr.mode = "AE"
    _, order = send_scheduled(node, tmp_path, "CT_small.dcm", "ct")
    assert _send_hl7(node, oru(order, "F", "final", "AE1")) == "AA"

    def dead() -> list[str]:
        return [j.last_error for j in node.jobs.list(state=JobState.DEAD, kind=DELIVER_RESULT_JOB)]

    assert wait_until(lambda: len(dead()) == 2), node.jobs.list()  # the report and images-available
    assert all("answered AE: unknown patient" in e for e in dead())
    [stats] = node.results.delivery_stats()
    assert (stats.delivered, stats.failed) == (0, 2)
    ehr.mode = "AA"
    assert node.jobs.replay_dead(DELIVER_RESULT_JOB) == 2
    assert wait_until(lambda: len(ehr.messages()) == 1 and len(ehr.messages("ORM")) == 1)

    def counts() -> tuple[int, int]:
        [stats] = node.results.delivery_stats()
        return stats.delivered, stats.failed

    assert wait_until(lambda: counts() == (2, 0)), counts()


def test_silence_and_a_down_ehr_are_retried_and_nothing_is_lost_across_a_restart(
    tmp_path: Path, ehr: Ehr, clock: RunningClock
) -> None:
    settings = _settings(tmp_path, ehr)
    node = Pacsflow(settings, clock)
    node.start()
    try:
        ehr.mode = "silent"
        _, order = send_scheduled(node, tmp_path, "CT_small.dcm", "ct")
        for n, status in enumerate(["P", "F"]):
            assert _send_hl7(node, oru(order, status, f"v{status}", f"S{n}")) == "AA"
        assert wait_until(
            lambda: any(j.attempts >= 2 for j in node.jobs.list(kind=DELIVER_RESULT_JOB)),
            timeout=30,
        ), node.jobs.list()
        ehr.down()  # and now it is down altogether
    finally:
        node.stop()
    assert ehr.messages() == []
    ehr.mode = "AA"
    ehr.up()
    again = Pacsflow(settings, clock)
    again.start()
    try:
        acc = str(order.accession_number)
        assert wait_until(lambda: len(ehr.messages()) == 2, timeout=30), again.jobs.list()
        assert ehr.messages() == [(acc, "P", "vP"), (acc, "F", "vF")]
        assert wait_until(
            lambda: all(j.state is JobState.DONE for j in again.jobs.list(kind=DELIVER_RESULT_JOB))
        )
    finally:
        again.stop()
    assert len(ehr.messages()) == 2  # each delivered once


def test_an_unusable_report_is_refused_with_the_reason(node_with_ehr: Pacsflow) -> None:
    bad = (
        b"MSH|^~\\&|RIS|HOSP|PACSFLOW|HOSP|20261129||ORU^R01|B1|P|2.5.1\r"
        b"PID|1||123^^^HOSP\r"
        b"OBR|1||||||||||||||||||||||||Q\r"
    )
    with MllpClient("127.0.0.1", node_with_ehr.hl7.port, 10) as client:
        ack = parse(client.send(bad))
    assert ack.get("MSA-1") in ("AE", "AR")
    assert ack.get("ERR-8") or ack.get("MSA-3")
    sock = socket.create_connection(("127.0.0.1", node_with_ehr.hl7.port), timeout=5)
    sock.close()


def test_a_report_for_a_held_study_attaches_when_the_study_is_reconciled(
    node_with_ehr: Pacsflow, ehr: Ehr, tmp_path: Path
) -> None:
    from pacsflow.domain.audit import ActiveParticipant
    from tests.conftest import restamp, storescu
    from tests.scheduling import scheduled

    node = node_with_ehr
    _, order = scheduled(node)
    # The modality typed the patient ID wrong: the study is held, not published.
    path, ds = restamp(
        "CT_small.dcm",
        tmp_path / "typo.dcm",
        patient_id="TYPO123",
        accession=str(order.accession_number),
        study_uid=str(order.study_instance_uid),
    )
    storescu(node.dicom.port, path)
    [held] = node.queries.exceptions(10)
    assert _send_hl7(node, oru(order, "F", "read before reconciling", "H1")) == "AA"
    [waiting] = node.results.reports(unattached_only=True)
    assert "held" in waiting.flag
    wait_settled(node)  # what the report started is done: nothing went out
    assert ehr.messages() == []
    node.reconciliation.match_to_order(
        held.id, str(order.accession_number), ActiveParticipant("rita", is_requestor=True)
    )
    acc = str(order.accession_number)
    assert wait_until(lambda: ehr.messages() == [(acc, "F", "read before reconciling")])
    assert node.results.reports(unattached_only=True) == []
    assert wait_until(lambda: len(ehr.messages("ORM")) == 1)  # images available, after publishing
    assert str(ds.StudyInstanceUID) == str(order.study_instance_uid)
