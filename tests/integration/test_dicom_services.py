"""The DICOM listener driven by DCMTK tools and pynetdicom peers on loopback."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
    StorageCommitmentPushModel,
    StorageCommitmentPushModelInstance,
)

from pacsflow.app import Pacsflow
from pacsflow.domain import commands as cmd
from pacsflow.domain.orders import Order, OrderStatus
from pacsflow.domain.studies import StudyFilter
from pacsflow.domain.uids import new_uid
from tests import factories as f
from tests.conftest import Receiver, dcmtk, move_study, requires_dcmtk, restamp, storescu
from tests.scheduling import place, scheduled

pytestmark = [pytest.mark.dcmtk, requires_dcmtk]


def test_echoscu_is_answered(node: Pacsflow) -> None:
    res = dcmtk("echoscu", "-aec", "PACSFLOW", "127.0.0.1", node.dicom.port)
    assert res.returncode == 0, res.stderr


SYNTAX_SAMPLES = [
    "CT_small.dcm",  # explicit VR little endian
    "MR_small_implicit.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "JPEG2000.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline
    "JPEG-lossy.dcm",  # JPEG extended
    "MR_small_jpeg_ls_lossless.dcm",
    "JPEGLSNearLossless_08.dcm",
    "image_dfl.dcm",  # deflated
    "test-SR.dcm",
]


def test_storescu_stores_every_common_transfer_syntax_as_received(
    node: Pacsflow, tmp_path: Path
) -> None:
    files = []
    for i, name in enumerate(SYNTAX_SAMPLES):
        path, _ = restamp(name, tmp_path / f"in/{i}.dcm", patient_id="UNSCHED1")
        files.append(path)
    res = storescu(node.dicom.port, *files)
    assert res.returncode == 0, res.stderr
    for path in files:
        sent = dcmread(path)
        [inst] = node.queries.instances(sop_uids=[sent.SOPInstanceUID], is_published_only=False)
        assert inst.transfer_syntax_uid == str(sent.file_meta.TransferSyntaxUID)
        stored = node.queries.local_file(inst)
        assert stored is not None
        # Stored as received: same transfer syntax, same elements, same (compressed) pixels.
        # storescu drops Data Set Trailing Padding before sending; it never reached us.
        # It also writes encapsulated Pixel Data as OB where a sample file says OW.
        got = {e.tag: e.value for e in dcmread(stored)}
        want = {e.tag: e.value for e in sent if e.keyword != "DataSetTrailingPadding"}
        assert got == want, path.name


def test_storescu_without_patient_id_is_stored_and_held(node: Pacsflow, tmp_path: Path) -> None:
    # Patient ID is Type 2: an empty one is valid, the study waits in the exceptions queue.
    path, ds = restamp("CT_small.dcm", tmp_path / "nopid.dcm", patient_id="")
    res = dcmtk("storescu", "-v", "-aec", "PACSFLOW", "127.0.0.1", node.dicom.port, path)
    assert res.returncode == 0, res.stdout + res.stderr
    [inst] = node.queries.instances(sop_uids=[ds.SOPInstanceUID], is_published_only=False)
    assert node.queries.studies(StudyFilter()) == []
    [held] = node.queries.exceptions()
    assert (held.study_instance_uid, held.reason) == (inst.study_instance_uid, "missing_patient_id")


def test_storescu_without_study_uid_gets_a_failure_status(node: Pacsflow, tmp_path: Path) -> None:
    path, ds = restamp("CT_small.dcm", tmp_path / "nostudy.dcm", patient_id="P1")
    del ds.StudyInstanceUID
    ds.save_as(path, enforce_file_format=True)
    res = dcmtk("storescu", "-v", "-aec", "PACSFLOW", "127.0.0.1", node.dicom.port, path)
    assert "Error: CannotUnderstand" in res.stdout + res.stderr  # 0xC000
    assert node.queries.instances(sop_uids=[ds.SOPInstanceUID], is_published_only=False) == []
    # The listener keeps serving after a refusal.
    assert dcmtk("echoscu", "-aec", "PACSFLOW", "127.0.0.1", node.dicom.port).returncode == 0


def test_same_instance_twice_is_stored_once(node: Pacsflow, tmp_path: Path) -> None:
    path, _ = restamp("CT_small.dcm", tmp_path / "dup.dcm", patient_id="DUP1")
    for _ in range(2):
        assert (
            dcmtk("storescu", "-aec", "PACSFLOW", "127.0.0.1", node.dicom.port, path).returncode
            == 0
        )
    held = node.queries.studies(StudyFilter(is_published_only=False))
    assert [v.study.instance_count for v in held] == [1]


def _worklist_query(tmp_path: Path, **sps: str) -> Path:
    q = Dataset()
    q.PatientName = ""
    q.PatientID = ""
    q.PatientBirthDate = ""
    q.PatientSex = ""
    q.AccessionNumber = ""
    q.StudyInstanceUID = ""
    q.RequestedProcedureID = ""
    q.RequestedProcedureDescription = ""
    item = Dataset()
    item.ScheduledStationAETitle = ""
    item.ScheduledProcedureStepStartDate = ""
    item.ScheduledProcedureStepStartTime = ""
    item.Modality = ""
    item.ScheduledProcedureStepID = ""
    for key, value in sps.items():
        setattr(item, key, value)
    q.ScheduledProcedureStepSequence = [item]
    path = tmp_path / f"wlq-{f.unique('')}.dcm"
    q.save_as(path, implicit_vr=False, little_endian=True)
    return path


def _findscu_w(node: Pacsflow, query: Path, out: Path, *keys: str) -> list[Dataset]:
    out.mkdir(parents=True, exist_ok=True)
    args: list[str | Path | int] = ["findscu", "-W", "-aec", "PACSFLOW", "-X", "-od", out]
    for key in keys:
        args += ["-k", key]
    res = dcmtk(*args, "127.0.0.1", node.dicom.port, query)
    assert res.returncode == 0, res.stderr
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def test_findscu_worklist_returns_the_order_with_a_utf8_name(
    node: Pacsflow, tmp_path: Path
) -> None:
    _, o = scheduled(node)
    query = _worklist_query(tmp_path, ScheduledStationAETitle="CT01", Modality="CT")
    [item] = _findscu_w(node, query, tmp_path / "out")
    assert item.SpecificCharacterSet == "ISO_IR 192"
    assert str(item.PatientName) == "Dvořák^Antonín"
    assert item.AccessionNumber == o.accession_number
    assert item.StudyInstanceUID == o.study_instance_uid
    sps = item.ScheduledProcedureStepSequence[0]
    assert sps.ScheduledStationAETitle == "CT01"
    assert sps.ScheduledProcedureStepStartDate == "20261128"


def test_findscu_worklist_filters_by_date_range_and_name_wildcard(
    node: Pacsflow, tmp_path: Path
) -> None:
    scheduled(node)
    scheduled(node, scheduled_start=datetime(2026, 12, 5, 8, 0, tzinfo=UTC))
    q = _worklist_query(tmp_path, ScheduledProcedureStepStartDate="20261201-20261231")
    assert len(_findscu_w(node, q, tmp_path / "a")) == 1
    q = _worklist_query(tmp_path, ScheduledProcedureStepStartDate="-20261128")
    assert len(_findscu_w(node, q, tmp_path / "b")) == 1
    q = _worklist_query(tmp_path)
    # Patient name matching is case-insensitive, with wildcards.
    assert len(_findscu_w(node, q, tmp_path / "c", "PatientName=dvo*")) == 2
    assert len(_findscu_w(node, q, tmp_path / "d", "PatientName=SMITH*")) == 0


def test_cancelled_order_leaves_the_worklist(node: Pacsflow, tmp_path: Path) -> None:
    _, o = scheduled(node)
    q = _worklist_query(tmp_path)
    assert len(_findscu_w(node, q, tmp_path / "a")) == 1
    place(node, cmd.CancelOrder(o.accession_number))
    assert _findscu_w(node, q, tmp_path / "b") == []


def _store_for(node: Pacsflow, tmp_path: Path, o, p, name: str = "CT_small.dcm") -> Dataset:
    path, ds = restamp(
        name,
        tmp_path / f"{f.unique('s')}.dcm",
        patient_id=p.primary.value,
        accession=o.accession_number,
        study_uid=o.study_instance_uid,
        name_pn="DVOŘÁK^ANTONÍN",
        birth=p.demographics.birth_date.strftime("%Y%m%d"),
        sex="M",
    )
    res = storescu(node.dicom.port, path)
    assert res.returncode == 0, res.stderr
    return ds


def test_findscu_study_root_sees_matched_studies_only(node: Pacsflow, tmp_path: Path) -> None:
    p, o = scheduled(node)
    _store_for(node, tmp_path, o, p)
    restamp("MR_small.dcm", tmp_path / "unsched.dcm", patient_id="NOBODY")
    dcmtk("storescu", "-aec", "PACSFLOW", "127.0.0.1", node.dicom.port, tmp_path / "unsched.dcm")
    out = tmp_path / "q"
    out.mkdir()
    res = dcmtk(
        "findscu",
        "-S",
        "-aec",
        "PACSFLOW",
        "-X",
        "-od",
        out,
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        "PatientID",
        "-k",
        "PatientName",
        "-k",
        "StudyInstanceUID",
        "-k",
        "AccessionNumber",
        "-k",
        "ModalitiesInStudy",
        "127.0.0.1",
        node.dicom.port,
    )
    assert res.returncode == 0, res.stderr
    found = [dcmread(x) for x in out.glob("rsp*.dcm")]
    assert [d.StudyInstanceUID for d in found] == [o.study_instance_uid]
    assert found[0].PatientName == "Dvořák^Antonín"  # the index's identity, not the header's
    assert found[0].ModalitiesInStudy == "CT"


@pytest.mark.parametrize("level", ["SERIES", "IMAGE"])
def test_findscu_patient_root_lower_levels(node: Pacsflow, tmp_path: Path, level: str) -> None:
    p, o = scheduled(node)
    ds = _store_for(node, tmp_path, o, p)
    out = tmp_path / "q"
    out.mkdir()
    res = dcmtk(
        "findscu",
        "-P",
        "-aec",
        "PACSFLOW",
        "-X",
        "-od",
        out,
        "-k",
        f"QueryRetrieveLevel={level}",
        "-k",
        f"PatientID={p.primary.value}",
        "-k",
        f"StudyInstanceUID={o.study_instance_uid}",
        "-k",
        "SeriesInstanceUID",
        "-k",
        "SOPInstanceUID",
        "-k",
        "Modality",
        "127.0.0.1",
        node.dicom.port,
    )
    assert res.returncode == 0, res.stderr
    [found] = [dcmread(x) for x in out.glob("rsp*.dcm")]
    assert found.SeriesInstanceUID == ds.SeriesInstanceUID
    if level == "IMAGE":
        assert found.SOPInstanceUID == ds.SOPInstanceUID


def test_movescu_sends_the_study_to_a_configured_peer_with_index_identity(
    node: Pacsflow, receiver: Receiver, tmp_path: Path
) -> None:
    p, o = scheduled(node)
    sent = _store_for(node, tmp_path, o, p)
    _store_for(node, tmp_path, o, p, "MR_small_RLE.dcm")
    received = move_study(node.dicom.port, o.study_instance_uid, receiver)
    uids = {d.SOPInstanceUID for d in received}
    assert sent.SOPInstanceUID in uids
    assert len(uids) == 2
    for ds in received:
        assert ds.PatientName == "Dvořák^Antonín"
        assert ds.IssuerOfPatientID == p.primary.issuer


def test_movescu_to_unknown_destination_is_refused(node: Pacsflow, tmp_path: Path) -> None:
    p, o = scheduled(node)
    _store_for(node, tmp_path, o, p)
    res = dcmtk(
        "movescu",
        "-v",
        "-S",
        "-aec",
        "PACSFLOW",
        "-aem",
        "NOWHERE",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={o.study_instance_uid}",
        "127.0.0.1",
        node.dicom.port,
    )
    assert "Refused: MoveDestinationUnknown" in res.stdout + res.stderr  # 0xA801


def test_getscu_retrieves_the_study(node: Pacsflow, tmp_path: Path) -> None:
    p, o = scheduled(node)
    sent = _store_for(node, tmp_path, o, p)
    out = tmp_path / "got"
    out.mkdir()
    res = dcmtk(
        "getscu",
        "-S",
        "-aec",
        "PACSFLOW",
        "-od",
        out,
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={o.study_instance_uid}",
        "127.0.0.1",
        node.dicom.port,
    )
    assert res.returncode == 0, res.stderr
    [got] = [dcmread(x) for x in out.iterdir()]
    assert got.SOPInstanceUID == sent.SOPInstanceUID
    assert got.PatientName == "Dvořák^Antonín"


def test_held_studies_are_not_retrievable(node: Pacsflow, tmp_path: Path) -> None:
    path, ds = restamp("CT_small.dcm", tmp_path / "held.dcm", patient_id="NOBODY2")
    dcmtk("storescu", "-aec", "PACSFLOW", "127.0.0.1", node.dicom.port, path)
    out = tmp_path / "got"
    out.mkdir()
    dcmtk(
        "getscu",
        "-S",
        "-aec",
        "PACSFLOW",
        "-od",
        out,
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={ds.StudyInstanceUID}",
        "127.0.0.1",
        node.dicom.port,
    )
    assert list(out.iterdir()) == []


def test_mpps_in_progress_then_completed_moves_the_order(node: Pacsflow) -> None:
    _, o = scheduled(node)
    ae = AE(ae_title="CT01")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", node.dicom.port, ae_title="PACSFLOW")
    assert assoc.is_established
    try:
        uid = new_uid()
        attrs = _in_progress(o)
        status, _ = assoc.send_n_create(attrs, ModalityPerformedProcedureStep, uid)
        assert status.Status == 0x0000
        assert node.queries.orders()[0].status is OrderStatus.IN_PROGRESS
        mods = Dataset()
        mods.PerformedProcedureStepStatus = "COMPLETED"
        status, _ = assoc.send_n_set(mods, ModalityPerformedProcedureStep, uid)
        assert status.Status == 0x0000
        assert node.queries.orders()[0].status is OrderStatus.COMPLETED
        status, _ = assoc.send_n_set(mods, ModalityPerformedProcedureStep, new_uid())
        assert status.Status == 0x0112  # no such object instance
    finally:
        assoc.release()


def _in_progress(order: Order) -> Dataset:
    """An MPPS N-CREATE's attributes: the order's step started on CT01."""
    attrs = Dataset()
    ref = Dataset()
    ref.AccessionNumber = order.accession_number
    ref.StudyInstanceUID = order.study_instance_uid
    attrs.ScheduledStepAttributesSequence = [ref]
    attrs.PerformedProcedureStepStatus = "IN PROGRESS"
    attrs.PerformedStationAETitle = "CT01"
    return attrs


def _worklist_accessions(assoc: Any) -> list[str]:
    query = Dataset()
    query.AccessionNumber = ""
    query.ScheduledProcedureStepSequence = [Dataset()]
    found = []
    for st, ds in assoc.send_c_find(query, ModalityWorklistInformationFind):
        if st.Status in (0xFF00, 0xFF01) and ds is not None:
            found.append(str(ds.AccessionNumber))
    return found


@pytest.mark.parametrize("finish", ["COMPLETED", "DISCONTINUED"])
def test_a_finished_mpps_refuses_a_resent_n_create_and_every_n_set(
    node: Pacsflow, finish: str
) -> None:
    """PS3.4 F.7.2.2.2: N-CREATE of an existing step is 0x0111; N-SET after the end, 0x0110."""
    _, o = scheduled(node)
    ae = AE(ae_title="CT01")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", node.dicom.port, ae_title="PACSFLOW")
    assert assoc.is_established
    try:
        uid = new_uid()
        attrs = _in_progress(o)
        assert assoc.send_n_create(attrs, ModalityPerformedProcedureStep, uid)[0].Status == 0
        assert assoc.send_n_create(attrs, ModalityPerformedProcedureStep, uid)[0].Status == 0x0111
        done = Dataset()
        done.PerformedProcedureStepStatus = finish
        assert assoc.send_n_set(done, ModalityPerformedProcedureStep, uid)[0].Status == 0
        finished = node.queries.orders()[0].status
        assert finished is OrderStatus(finish.lower())
        assert _worklist_accessions(assoc) == []

        # The modality re-sends its N-CREATE after a timeout: refused, the exam stays closed.
        status, _ = assoc.send_n_create(attrs, ModalityPerformedProcedureStep, uid)
        assert status.Status == 0x0111  # Duplicate SOP Instance
        assert node.queries.orders()[0].status is finished
        assert _worklist_accessions(assoc) == []

        same = Dataset()
        same.PerformedProcedureStepStatus = finish
        other = Dataset()
        other.PerformedProcedureStepStatus = (
            "DISCONTINUED" if finish == "COMPLETED" else "COMPLETED"
        )
        no_status = Dataset()
        no_status.PerformedProcedureStepEndTime = "120000"
        for mods in (same, other, no_status):
            status, _ = assoc.send_n_set(mods, ModalityPerformedProcedureStep, uid)
            assert status.Status == 0x0110, mods  # Processing failure
        assert node.queries.orders()[0].status is finished
    finally:
        assoc.release()


def test_storage_commitment_reports_committed_and_failed_instances(tmp_path: Path) -> None:
    """The modality asks; the report comes back on a new association to its own SCP."""
    from pacsflow.config import DicomPeer
    from tests.conftest import make_settings

    reports: list[tuple[int | None, Dataset]] = []
    modality = AE(ae_title="MODALITY")
    modality.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)

    def on_report(event: evt.Event) -> tuple[int, None]:
        reports.append((event.event_type, event.event_information))
        return 0x0000, None

    scp = modality.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)]
    )
    assert scp is not None
    peer = DicomPeer(ae_title="MODALITY", host="127.0.0.1", port=scp.server_address[1])
    n = Pacsflow(make_settings(tmp_path, peers=[peer]))
    n.start()
    try:
        path, ds = restamp("CT_small.dcm", tmp_path / "c.dcm", patient_id="COMMIT1")
        assert (
            dcmtk("storescu", "-aec", "PACSFLOW", "127.0.0.1", n.dicom.port, path).returncode == 0
        )
        request = Dataset()
        request.TransactionUID = new_uid()
        stored, missing = Dataset(), Dataset()
        stored.ReferencedSOPClassUID = ds.SOPClassUID
        stored.ReferencedSOPInstanceUID = ds.SOPInstanceUID
        missing.ReferencedSOPClassUID = ds.SOPClassUID
        missing.ReferencedSOPInstanceUID = new_uid()
        request.ReferencedSOPSequence = [stored, missing]
        scu = AE(ae_title="MODALITY")
        scu.add_requested_context(StorageCommitmentPushModel)
        assoc = scu.associate(
            "127.0.0.1",
            n.dicom.port,
            ae_title="PACSFLOW",
            ext_neg=[build_role(StorageCommitmentPushModel, scu_role=True, scp_role=True)],
        )
        status, _ = assoc.send_n_action(
            request, 1, StorageCommitmentPushModel, StorageCommitmentPushModelInstance
        )
        assoc.release()
        assert status.Status == 0x0000
        deadline = time.monotonic() + 10
        while not reports and time.monotonic() < deadline:
            time.sleep(0.05)
        [(event_type, info)] = reports
        assert event_type == 2  # some failed
        assert info.TransactionUID == request.TransactionUID
        assert [i.ReferencedSOPInstanceUID for i in info.ReferencedSOPSequence] == [
            ds.SOPInstanceUID
        ]
        assert [i.ReferencedSOPInstanceUID for i in info.FailedSOPSequence] == [
            missing.ReferencedSOPInstanceUID
        ]
    finally:
        n.stop()
        scp.shutdown()
