"""Who may talk to pacsflow: DICOM peer rights, strict and lab modes, HL7 sending applications."""

from __future__ import annotations

from pathlib import Path

import pytest

from pacsflow.adapters.hl7 import MllpClient
from pacsflow.app import Pacsflow
from pacsflow.config import DicomPeer
from pacsflow.domain.access import (
    DicomOperation,
    PeerRights,
    dicom_allows,
    move_allowed,
)
from tests.conftest import dcmtk, make_settings, requires_dcmtk, restamp


def test_default_policy_is_least_privilege() -> None:
    for op in (DicomOperation.ECHO, DicomOperation.STORE, DicomOperation.PROCEDURE_STEP):
        assert dicom_allows(op, None)
    for op in (DicomOperation.QUERY, DicomOperation.WORKLIST, DicomOperation.RETRIEVE):
        assert not dicom_allows(op, None)
        assert dicom_allows(op, None, is_open=True)
    reader = PeerRights(can_store=False, can_retrieve=False)
    assert dicom_allows(DicomOperation.QUERY, reader)
    assert not dicom_allows(DicomOperation.STORE, reader)
    assert not dicom_allows(DicomOperation.RETRIEVE, reader)


def test_move_goes_to_the_caller_or_its_listed_destinations() -> None:
    rights = PeerRights(move_destinations=frozenset({"VIEWER"}))
    assert move_allowed("WS1", rights, "WS1", is_open=False)
    assert move_allowed("WS1", rights, "VIEWER", is_open=False)
    assert not move_allowed("WS1", rights, "ELSEWHERE", is_open=False)
    assert not move_allowed("STRANGER", None, "STRANGER", is_open=False)
    assert move_allowed("STRANGER", None, "VIEWER", is_open=True)


@pytest.fixture
def policy_node(tmp_path: Path):
    settings = make_settings(
        tmp_path,
        peers=[
            DicomPeer(ae_title="READER", host="127.0.0.1", port=9, can_store=False),
            DicomPeer(ae_title="MOVER", host="127.0.0.1", port=9),
        ],
    )
    node = Pacsflow(settings)
    node.start()
    yield node
    node.stop()


def _find(node: Pacsflow, aet: str):
    return dcmtk(
        "findscu", "-v", "-S", "-aet", aet, "-aec", "PACSFLOW",
        "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID",
        "127.0.0.1", node.dicom.port,
    )  # fmt: skip


@pytest.mark.dcmtk
@requires_dcmtk
def test_unknown_ae_may_store_but_not_query(policy_node: Pacsflow, tmp_path: Path) -> None:
    path, _ = restamp("CT_small.dcm", tmp_path / "a.dcm", patient_id="P1")
    res = dcmtk("storescu", "-aet", "NEWMODALITY", "-aec", "PACSFLOW", "127.0.0.1",
                policy_node.dicom.port, path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    refused = _find(policy_node, "STRANGER")
    # 0x0124 Refused: Not Authorized (DCMTK 3.6.7 names it "Unknown Status").
    assert "Status: 0x124" in refused.stdout + refused.stderr
    assert _find(policy_node, "READER").returncode == 0


@pytest.mark.dcmtk
@requires_dcmtk
def test_peer_without_store_right_is_refused(policy_node: Pacsflow, tmp_path: Path) -> None:
    path, ds = restamp("CT_small.dcm", tmp_path / "a.dcm", patient_id="P1")
    res = dcmtk("storescu", "-v", "-aet", "READER", "-aec", "PACSFLOW", "127.0.0.1",
                policy_node.dicom.port, path)  # fmt: skip
    assert "Status: 0x124" in res.stdout + res.stderr
    assert (
        policy_node.queries.instances(sop_uids=[ds.SOPInstanceUID], is_published_only=False) == []
    )


@pytest.mark.dcmtk
@requires_dcmtk
def test_move_to_a_destination_the_caller_may_not_use_is_refused(policy_node: Pacsflow) -> None:
    res = dcmtk(
        "movescu", "-v", "-S", "-aet", "MOVER", "-aec", "PACSFLOW", "-aem", "READER",
        "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=1.2.3",
        "127.0.0.1", policy_node.dicom.port,
    )  # fmt: skip
    assert "MoveDestinationUnknown" in res.stdout + res.stderr


@pytest.mark.dcmtk
@requires_dcmtk
def test_strict_mode_rejects_unknown_aes_at_association(tmp_path: Path) -> None:
    node = Pacsflow(
        make_settings(
            tmp_path,
            dicom_strict=True,
            peers=[DicomPeer(ae_title="KNOWN", host="127.0.0.1", port=9)],
        )
    )
    node.start()
    try:
        args = ("-aec", "PACSFLOW", "127.0.0.1", node.dicom.port)
        assert dcmtk("echoscu", "-aet", "KNOWN", *args).returncode == 0
        rejected = dcmtk("echoscu", "-aet", "STRANGER", *args)
        assert rejected.returncode != 0
        assert "Rejected" in rejected.stdout + rejected.stderr
    finally:
        node.stop()


@pytest.mark.dcmtk
@requires_dcmtk
def test_lab_mode_lets_any_ae_query_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node = Pacsflow(make_settings(tmp_path, dicom_open=True))
    node.start()
    try:
        assert "PACSFLOW_DICOM_OPEN" in caplog.text
        res = _find(node, "STRANGER")
        assert res.returncode == 0
        assert "0x124" not in res.stdout + res.stderr
    finally:
        node.stop()


def test_hl7_from_a_sender_not_allowed_gets_ar(tmp_path: Path) -> None:
    node = Pacsflow(make_settings(tmp_path, hl7_allowed_senders=["RIS", "HIS^MAINHOSP"]))
    node.start()
    msg = (
        "MSH|^~\\&|{app}|{fac}|PACSFLOW|RAD|20261128090000||ADT^A01|{cid}|P|2.5.1\r"
        "PID|1||1^^^H||X^Y\r"
    )
    try:
        with MllpClient("127.0.0.1", node.hl7.port, timeout=10) as client:

            def send(app: str, fac: str, cid: str) -> str:
                ack = client.send(msg.format(app=app, fac=fac, cid=cid).encode()).decode()
                return next(s for s in ack.split("\r") if s.startswith("MSA|")).split("|")[1]

            assert send("RIS", "ANY", "1") == "AA"
            assert send("HIS", "MAINHOSP", "2") == "AA"
            assert send("HIS", "OTHER", "3") == "AR"
            assert send("ROGUE", "X", "4") == "AR"
    finally:
        node.stop()
