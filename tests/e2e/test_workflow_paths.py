"""End-to-end: the scheduled path, the unscheduled path and bad inputs through `pacsflow serve`."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from tests.conftest import dcmtk, requires_dcmtk, restamp, storescu
from tests.e2e.conftest import Served

pytestmark = [pytest.mark.dcmtk, requires_dcmtk]

ADT = (
    "MSH|^~\\&|HIS|HOSP|PACSFLOW|RAD|20261128090000||ADT^A01^ADT_A01|ADT0001|P|2.5.1"
    "||||||UNICODE UTF-8\r"
    "PID|1||12345^^^HOSP^MR||Dvořák^Antonín||19700102|M\r"
)
ORM = (
    "MSH|^~\\&|RIS|HOSP|PACSFLOW|RAD|20261128090100||ORM^O01|ORM0001|P|2.3.1"
    "||||||UNICODE UTF-8\r"
    "PID|1||12345^^^HOSP^MR||Dvořák^Antonín||19700102|M\r"
    "PV1|1|O||||||5678^WELBY^MARCUS\r"
    "ORC|NW|PL1001|FL1001||SC\r"
    "OBR|1|PL1001|FL1001|CTCHEST^CT chest^L||||||||||||||ACC1001|RP1001|SPS1001||||CT"
    "|||^^^20261128093000^^S\r"
)


def _msa(ack: str) -> list[str]:
    [msa] = [seg for seg in ack.split("\r") if seg.startswith("MSA|")]
    return msa.split("|")


def _err(ack: str) -> str:
    return "\r".join(seg for seg in ack.split("\r") if seg.startswith("ERR|"))


def _worklist(served: Served, out: Path) -> list[Dataset]:
    out.mkdir()
    res = dcmtk(
        "findscu", "-W", "-aec", "PACSFLOW", "-X", "-od", out,
        "-k", "ScheduledProcedureStepSequence[0].Modality=CT",
        "-k", "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
        "-k", "PatientName", "-k", "PatientID", "-k", "PatientBirthDate", "-k", "PatientSex",
        "-k", "AccessionNumber", "-k", "StudyInstanceUID",
        "127.0.0.1", served.dicom_port,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def test_scheduled_path_adt_orm_worklist_store_matched_queryable(
    served: Served, tmp_path: Path
) -> None:
    adt_ack, orm_ack = served.send_hl7(ADT, ORM)
    assert _msa(adt_ack)[1:3] == ["AA", "ADT0001"]
    assert _msa(orm_ack)[1:3] == ["AA", "ORM0001"]

    [item] = _worklist(served, tmp_path / "mwl")
    assert str(item.PatientName) == "Dvořák^Antonín"
    assert item.SpecificCharacterSet == "ISO_IR 192"
    assert item.AccessionNumber == "ACC1001"
    assert item.ScheduledProcedureStepSequence[0].ScheduledStationAETitle == "CT01"

    # The modality copies the worklist item into the images it acquires.
    path, ds = restamp(
        "CT_small.dcm",
        tmp_path / "ct.dcm",
        patient_id=str(item.PatientID),
        accession=str(item.AccessionNumber),
        study_uid=str(item.StudyInstanceUID),
        name_pn=str(item.PatientName),
        birth=str(item.PatientBirthDate),
        sex=str(item.PatientSex),
    )
    assert storescu(served.dicom_port, path).returncode == 0

    [study] = served.get("/api/studies").json()
    assert study["state"] == "published"
    assert study["study_instance_uid"] == ds.StudyInstanceUID
    assert study["accession_number"] == "ACC1001"
    assert study["patient"]["patient_id"] == "12345"
    assert study["patient"]["issuer"] == "HOSP"
    assert served.get("/api/exceptions").json() == []
    [order] = served.get("/api/orders").json()
    assert (order["accession_number"], order["priority"]) == ("ACC1001", "STAT")
    patient = served.get("/api/patients/12345").json()
    assert patient["patient"]["family_name"] == "Dvořák"
    assert [s["study_instance_uid"] for s in patient["studies"]] == [ds.StudyInstanceUID]

    out = tmp_path / "qr"
    out.mkdir()
    res = dcmtk(
        "findscu", "-S", "-aec", "PACSFLOW", "-X", "-od", out,
        "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=12345", "-k", "StudyInstanceUID",
        "-k", "PatientName", "127.0.0.1", served.dicom_port,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert [dcmread(p).StudyInstanceUID for p in out.glob("rsp*.dcm")] == [ds.StudyInstanceUID]

    # A resent ORM (same sender and control id) gets the same answer and changes nothing.
    [again] = served.send_hl7(ORM)
    assert again == orm_ack
    assert len(served.get("/api/orders").json()) == 1


def test_unscheduled_path_goes_to_the_exceptions_queue(served: Served, tmp_path: Path) -> None:
    path, ds = restamp("MR_small.dcm", tmp_path / "walkin.dcm", patient_id="99999")
    assert storescu(served.dicom_port, path).returncode == 0

    assert served.get("/api/studies").json() == []
    [exc] = served.get("/api/exceptions").json()
    assert exc["study_instance_uid"] == ds.StudyInstanceUID
    assert (exc["reason"], exc["source"]) == ("unknown_patient", "registration")
    assert exc["received_patient_id"] == "99999"
    assert exc["age_seconds"] >= 0
    [held] = served.get("/api/studies", include_held="true").json()
    assert held["state"] == "held"

    out = tmp_path / "qr"
    out.mkdir()
    dcmtk(
        "findscu", "-S", "-aec", "PACSFLOW", "-X", "-od", out,
        "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID",
        "127.0.0.1", served.dicom_port,
    )  # fmt: skip
    assert list(out.glob("rsp*.dcm")) == []


def test_bad_inputs_get_clear_errors_and_never_stop_the_listeners(
    served: Served, tmp_path: Path
) -> None:
    no_pid3 = (
        "MSH|^~\\&|HIS|HOSP|PACSFLOW|RAD|20261128090000||ADT^A01|BAD0001|P|2.5.1\r"
        "PID|1||^^^HOSP||DOE^JOHN||19700102|M\r"
    )
    unknown_type = "MSH|^~\\&|HIS|HOSP|PACSFLOW|RAD|20261128090000||QRY^A19|BAD0002|P|2.5.1\r"
    bad_charset = (
        "MSH|^~\\&|HIS|HOSP|PACSFLOW|RAD|20261128090000||ADT^A01|BAD0003|P|2.5.1"
        "||||||ISO IR87\rPID|1||1^^^H||X^Y\r"
    )
    # No accession number anywhere on its chain (OBR-18, then the filler number ORC-3/OBR-3).
    no_accession = ORM.replace("ACC1001", "").replace("FL1001", "").replace("ORM0001", "BAD0004")
    garbage = "this is not HL7 at all"
    acks = served.send_hl7(no_pid3, unknown_type, bad_charset, no_accession, garbage)
    codes = [_msa(a)[1] for a in acks]
    assert codes == ["AE", "AE", "AE", "AE", "AE"]
    assert "101" in _err(acks[0])
    assert "PID-3" in acks[0]
    assert "200" in _err(acks[1])
    assert "MSH-18" in acks[2]
    assert "OBR-18" in acks[3]
    assert all(_err(a) for a in acks)

    # Still serving: a good message is applied.
    [ok] = served.send_hl7(ADT)
    assert _msa(ok)[1] == "AA"

    # Everything was journaled, bad input included.
    with sqlite3.connect(served.data_dir / "pacsflow.db") as db:
        statuses = dict(db.execute("select control_id, status from hl7_messages").fetchall())
    assert statuses == {
        "BAD0001": "rejected",
        "BAD0002": "rejected",
        "BAD0003": "rejected",
        "BAD0004": "rejected",
        "": "rejected",  # the garbage, kept as received
        "ADT0001": "applied",
    }

    # DICOM: an object that cannot be indexed (no Study Instance UID) is refused with a
    # failure status, nothing stored.
    path, ds = restamp("CT_small.dcm", tmp_path / "nostudy.dcm", patient_id="P1")
    del ds.StudyInstanceUID
    ds.save_as(path, enforce_file_format=True)
    res = storescu(served.dicom_port, path)
    assert "CannotUnderstand" in res.stdout + res.stderr
    assert served.get("/api/studies", include_held="true").json() == []
    assert dcmtk("echoscu", "-aec", "PACSFLOW", "127.0.0.1", served.dicom_port).returncode == 0

    # HTTP: unknown resources and bad parameters answer 4xx with a JSON body.
    missing = served.get("/api/patients/nobody")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no patient nobody"
    bad = served.get("/api/orders", status="bogus")
    assert bad.status_code == 422
    assert "detail" in bad.json()
    assert served.get("/healthz").json()["listeners"] == {
        "dicom": "up",
        "hl7": "up",
        "http": "up",
    }


def test_a40_merge_moves_studies_to_the_survivor(served: Served, tmp_path: Path) -> None:
    served.send_hl7(ADT, ORM)
    path, ds = restamp(
        "CT_small.dcm",
        tmp_path / "ct.dcm",
        patient_id="12345",
        accession="ACC1001",
        name_pn="Dvořák^Antonín",
        birth="19700102",
        sex="M",
    )
    assert storescu(served.dicom_port, path).returncode == 0
    merge = (
        "MSH|^~\\&|HIS|HOSP|PACSFLOW|RAD|20261128100000||ADT^A40^ADT_A39|MRG0001|P|2.5.1"
        "||||||UNICODE UTF-8\r"
        "PID|1||777^^^HOSP^MR||Novák^Jan||19700102|M\r"
        "MRG|12345^^^HOSP\r"
    )
    [ack] = served.send_hl7(merge)
    assert _msa(ack)[1] == "AA"
    out = tmp_path / "qr"
    out.mkdir()
    res = dcmtk(
        "findscu", "-S", "-aec", "PACSFLOW", "-X", "-od", out,
        "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=777", "-k", "PatientName",
        "-k", "StudyInstanceUID", "127.0.0.1", served.dicom_port,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    [found] = [dcmread(p) for p in out.glob("rsp*.dcm")]
    assert found.StudyInstanceUID == ds.StudyInstanceUID
    assert str(found.PatientName) == "Novák^Jan"  # the survivor's identity, not the file's
    assert found.PatientID == "777"
