"""Identity changes over the wire: ADT over MLLP, images and queries with DCMTK.

A40 merge, A47 identifier change, A24 link then A37 unlink, each checked by what a
workstation sees: `findscu` Study Root C-FIND by Patient ID.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import Dataset, dcmread

from pacsflow.adapters.hl7.mllp import MllpClient
from pacsflow.app import Pacsflow
from pacsflow.domain.studies import StudyFilter, StudyState
from pacsflow.domain.uids import Uid
from tests import factories as f
from tests.conftest import dcmtk, requires_dcmtk, restamp, storescu

pytestmark = [pytest.mark.dcmtk, requires_dcmtk]

_MSH = "MSH|^~\\&|HIS|HOSP|PACSFLOW|RAD|20261130090000||{type}|{cid}|P|2.5\r"


def _pid(patient_id: str, name: str, issuer: str = "HOSP") -> str:
    return f"PID|1||{patient_id}^^^{issuer}^MR||{name}||19700102|F\r"


def _send(node: Pacsflow, message_type: str, *segments: str) -> None:
    """Send one HL7 message over MLLP; it must be accepted (AA)."""
    raw = _MSH.format(type=message_type, cid=f.unique("C")) + "".join(segments)
    with MllpClient("127.0.0.1", node.hl7.port, timeout=10) as client:
        ack = client.send(raw.encode()).decode()
    [msa] = [s for s in ack.split("\r") if s.startswith("MSA|")]
    assert msa.split("|")[1] == "AA", ack


def _scheduled_study(
    node: Pacsflow, tmp: Path, patient_id: str, name: str, issuer: str = "HOSP"
) -> str:
    """Register a patient, order a CT (ORM^O01) and store its images (storescu): published."""
    accession = f.unique("ACC")
    _send(node, "ADT^A04", _pid(patient_id, name, issuer))
    _send(
        node,
        "ORM^O01",
        _pid(patient_id, name, issuer),
        f"ORC|NW|{accession}|{accession}||SC\r",
        f"OBR|1|{accession}|{accession}|CTCHEST^CT chest^L||||||||||||||{accession}"
        f"|RP{accession}|SPS{accession}||||CT|||^^^20261130093000^^S\r",
    )
    path, ds = restamp(
        "CT_small.dcm",
        tmp / f"{accession}.dcm",
        patient_id=patient_id,
        accession=accession,
        name_pn=name,
        issuer=issuer,
        birth="19700102",
        sex="F",
    )
    res = storescu(node.dicom.port, path)
    assert res.returncode == 0, res.stderr
    [view] = node.queries.studies(StudyFilter(study_instance_uids=(Uid(ds.StudyInstanceUID),)))
    assert view.study.state is StudyState.PUBLISHED
    return str(ds.StudyInstanceUID)


def _find(node: Pacsflow, tmp: Path, patient_id: str) -> dict[str, Dataset]:
    """Study Root C-FIND by Patient ID from DCMTK findscu (calling AE FINDSCU), by study UID."""
    out = tmp / f.unique("find")
    out.mkdir()
    res = dcmtk(
        "findscu", "-S", "-aet", "FINDSCU", "-aec", "PACSFLOW", "-X", "-od", out,
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"PatientID={patient_id}",
        "-k", "IssuerOfPatientID", "-k", "PatientName", "-k", "StudyInstanceUID",
        "-k", "AccessionNumber",
        "127.0.0.1", node.dicom.port,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    answers = [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]
    return {str(a.StudyInstanceUID): a for a in answers}


def test_a40_merge_moves_studies_to_the_survivor(node: Pacsflow, tmp_path: Path) -> None:
    old = _scheduled_study(node, tmp_path, "OLD40", "SMYTHE^JOAN")
    own = _scheduled_study(node, tmp_path, "SURV40", "SMITH^JOAN")
    _send(node, "ADT^A40^ADT_A39", _pid("SURV40", "SMITH^JOAN"), "MRG|OLD40^^^HOSP^MR\r")
    found = _find(node, tmp_path, "SURV40")
    assert set(found) == {old, own}
    for answer in found.values():  # the survivor's identity, coerced from the index
        assert answer.PatientID == "SURV40"
        assert answer.IssuerOfPatientID == "HOSP"
        assert str(answer.PatientName) == "SMITH^JOAN"
    assert _find(node, tmp_path, "OLD40") == {}


def test_a47_renames_the_identifier(node: Pacsflow, tmp_path: Path) -> None:
    study = _scheduled_study(node, tmp_path, "WRONG47", "ROE^JANE")
    _send(node, "ADT^A47^ADT_A30", _pid("RIGHT47", "ROE^JANE"), "MRG|WRONG47^^^HOSP^MR\r")
    found = _find(node, tmp_path, "RIGHT47")
    assert set(found) == {study}
    assert found[study].PatientID == "RIGHT47"
    assert _find(node, tmp_path, "WRONG47") == {}


def test_a24_links_and_a37_restores(node: Pacsflow, tmp_path: Path) -> None:
    mine = _scheduled_study(node, tmp_path, "LINKA", "DOE^ANN")
    other = _scheduled_study(node, tmp_path, "LINKB", "DOE^ANNE", issuer="CLINIC")
    before = {pid: _find(node, tmp_path, pid) for pid in ("LINKA", "LINKB")}
    assert set(before["LINKA"]) == {mine}
    assert set(before["LINKB"]) == {other}

    _send(
        node,
        "ADT^A24^ADT_A24",
        _pid("LINKA", "DOE^ANN"),
        _pid("LINKB", "DOE^ANNE", issuer="CLINIC"),
    )
    for pid in ("LINKA", "LINKB"):
        found = _find(node, tmp_path, pid)
        assert set(found) == {mine, other}
        # Both records stay: each study keeps its own patient's identity.
        assert (found[mine].PatientID, str(found[mine].PatientName)) == ("LINKA", "DOE^ANN")
        assert (found[other].PatientID, found[other].IssuerOfPatientID) == ("LINKB", "CLINIC")

    _send(
        node,
        "ADT^A37^ADT_A37",
        _pid("LINKA", "DOE^ANN"),
        _pid("LINKB", "DOE^ANNE", issuer="CLINIC"),
    )
    after = {pid: _find(node, tmp_path, pid) for pid in ("LINKA", "LINKB")}
    assert {pid: set(a) for pid, a in after.items()} == {pid: set(b) for pid, b in before.items()}
    for pid in ("LINKA", "LINKB"):
        for uid, answer in after[pid].items():
            assert answer.PatientID == before[pid][uid].PatientID
            assert answer.PatientName == before[pid][uid].PatientName
