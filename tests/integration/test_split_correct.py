"""Split and correct through the API, seen by DCMTK findscu/movescu; merged-ID queries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from typer.testing import CliRunner

from pacsflow.app import Pacsflow
from pacsflow.cli import app as cli
from pacsflow.config import DicomPeer
from pacsflow.domain import commands as cmd
from pacsflow.domain.access import Role
from pacsflow.domain.orders import Order
from pacsflow.domain.patients import Patient
from pacsflow.domain.uids import Uid, new_uid
from tests import factories as f
from tests.api_client import Api
from tests.conftest import (
    TOOL_PEERS,
    Receiver,
    dcmtk,
    make_settings,
    move_study,
    requires_dcmtk,
    restamp,
    storescu,
)
from tests.scheduling import place, scheduled

pytestmark = [pytest.mark.dcmtk, requires_dcmtk]

runner = CliRunner()


def _send(
    node: Pacsflow,
    tmp: Path,
    p: Patient,
    sample: str,
    *,
    study_uid: str,
    accession: str,
    series_uid: str | None = None,
    patient_id: str | None = None,
) -> Dataset:
    """Store a sample as one instance of the study (of a new series unless one is named)."""
    path, ds = restamp(
        sample,
        tmp / f"{f.unique('i')}.dcm",
        patient_id=patient_id or p.primary.value,
        accession=accession,
        study_uid=study_uid,
        name_pn="DVOŘÁK^ANTONÍN",
        birth="19700102",
        sex="M",
    )
    if series_uid is not None:
        ds.SeriesInstanceUID = series_uid
        ds.save_as(path, enforce_file_format=True)
    res = storescu(node.dicom.port, path)
    assert res.returncode == 0, res.stderr
    return ds


def _find(node: Pacsflow, out: Path, level: str, *keys: str, root: str = "-S") -> list[Dataset]:
    out.mkdir()
    args: list[str | Path | int] = ["findscu", root, "-aec", "PACSFLOW", "-X", "-od", out]
    args += ["-k", f"QueryRetrieveLevel={level}"]
    for key in keys:
        args += ["-k", key]
    res = dcmtk(*args, "127.0.0.1", node.dicom.port)
    assert res.returncode == 0, res.stderr
    return [dcmread(x) for x in sorted(out.glob("rsp*.dcm"))]


def _studies(node: Pacsflow, out: Path, patient_id: str) -> dict[str, tuple[int, int, str]]:
    found = _find(
        node,
        out,
        "STUDY",
        f"PatientID={patient_id}",
        "StudyInstanceUID",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
        "ModalitiesInStudy",
    )
    return {
        d.StudyInstanceUID: (
            int(d.NumberOfStudyRelatedSeries),
            int(d.NumberOfStudyRelatedInstances),
            _multi(d.ModalitiesInStudy),
        )
        for d in found
    }


def _multi(value: object) -> str:
    return value if isinstance(value, str) else "\\".join(str(v) for v in value)  # type: ignore[attr-defined]


def _move(node: Pacsflow, receiver: Receiver, study_uid: str, expected: int) -> list[Dataset]:
    got = move_study(node.dicom.port, study_uid, receiver)
    assert len(got) == expected
    return got


def _ct_and_mr(node: Pacsflow, tmp: Path) -> tuple[Patient, Order, Dataset, list[Dataset]]:
    """A published study of one CT series (1 instance) and one MR series (2 instances)."""
    p, o = scheduled(node)
    uid, acc = str(o.study_instance_uid), str(o.accession_number)
    ct = _send(node, tmp, p, "CT_small.dcm", study_uid=uid, accession=acc)
    mr = _send(node, tmp, p, "MR_small.dcm", study_uid=uid, accession=acc)
    mr2 = _send(
        node, tmp, p, "MR_small.dcm", study_uid=uid, accession=acc, series_uid=mr.SeriesInstanceUID
    )
    return p, o, ct, [mr, mr2]


def test_a_split_series_is_found_and_retrieved_as_its_own_study_until_undone(
    node: Pacsflow, receiver: Receiver, api_token: str, tmp_path: Path
) -> None:
    p, o, ct, mrs = _ct_and_mr(node, tmp_path)
    uid, pid = str(o.study_instance_uid), str(p.primary.value)
    assert _studies(node, tmp_path / "q0", pid) == {uid: (2, 3, "CT\\MR")}
    api = Api(node, api_token)

    res = api.post(f"/api/studies/{uid}/split", {"series_instance_uid": mrs[0].SeriesInstanceUID})
    assert res.status_code == 200, res.text
    body = res.json()
    new = body["target_study_uid"]
    assert (body["state"], body["target_state"]) == ("published", "published")

    # C-FIND: two studies of the patient, each with its own series and counts.
    assert _studies(node, tmp_path / "q1", pid) == {uid: (1, 1, "CT"), new: (1, 2, "MR")}
    [series] = _find(
        node,
        tmp_path / "q2",
        "SERIES",
        f"StudyInstanceUID={new}",
        "SeriesInstanceUID",
        "NumberOfSeriesRelatedInstances",
    )
    assert (series.SeriesInstanceUID, int(series.NumberOfSeriesRelatedInstances)) == (
        mrs[0].SeriesInstanceUID,
        2,
    )

    # C-MOVE of the new study: only its series, carrying the new Study Instance UID and the
    # patient and accession from the index.
    got = _move(node, receiver, new, 2)
    assert {d.SOPInstanceUID for d in got} == {d.SOPInstanceUID for d in mrs}
    for d in got:
        assert d.StudyInstanceUID == new
        assert d.SeriesInstanceUID == mrs[0].SeriesInstanceUID
        assert (d.PatientID, d.AccessionNumber) == (pid, o.accession_number)
        assert str(d.PatientName) == "Dvořák^Antonín"
    [kept] = _move(node, receiver, uid, 1)
    assert (kept.SOPInstanceUID, kept.StudyInstanceUID) == (ct.SOPInstanceUID, uid)
    # The files stay as received.
    for inst in node.queries.instances(study_uids=[Uid(new)]):
        path = node.queries.local_file(inst)
        assert path is not None
        assert dcmread(path, stop_before_pixels=True).StudyInstanceUID == uid

    undone = api.post(f"/api/reconciliation/{body['action_id']}/undo")
    assert undone.status_code == 200, undone.text
    assert _studies(node, tmp_path / "q3", pid) == {uid: (2, 3, "CT\\MR")}
    assert api.get(f"/api/studies/{new}").status_code == 404
    assert {d.StudyInstanceUID for d in _move(node, receiver, uid, 3)} == {uid}


def test_a_series_split_off_to_another_patient_leaves_under_that_patient(
    node: Pacsflow, receiver: Receiver, api_token: str, tmp_path: Path
) -> None:
    p, o, _ct, mrs = _ct_and_mr(node, tmp_path)
    q = f.patient(family="Dvořák", given="Antonín", sex="M")  # a namesake, another record
    oq = f.order(q, modality="MR")
    place(node, cmd.PlaceOrder(oq, q))
    api = Api(node, api_token)
    res = api.post(
        f"/api/studies/{o.study_instance_uid}/split",
        {
            "series_instance_uid": mrs[0].SeriesInstanceUID,
            "patient_id": q.primary.value,
            "accession_number": oq.accession_number,
        },
    )
    assert res.status_code == 200, res.text
    new = res.json()["target_study_uid"]
    assert res.json()["target_state"] == "published"
    assert set(_studies(node, tmp_path / "p", str(p.primary.value))) == {o.study_instance_uid}
    assert _studies(node, tmp_path / "q", str(q.primary.value)) == {new: (1, 2, "MR")}
    for d in _move(node, receiver, new, 2):
        assert (d.StudyInstanceUID, d.PatientID, d.AccessionNumber) == (
            new,
            q.primary.value,
            oq.accession_number,
        )


def test_split_requests_that_cannot_be_done_are_answered_with_a_problem(
    node: Pacsflow, api_token: str, tmp_path: Path
) -> None:
    _p, o, ct, _mrs = _ct_and_mr(node, tmp_path)
    api = Api(node, api_token)
    uid = o.study_instance_uid
    unknown = api.post(f"/api/studies/{uid}/split", {"series_instance_uid": new_uid()})
    assert (unknown.status_code, unknown.json()["title"]) == (400, "InvalidInput")
    assert api.post(f"/api/studies/{uid}/split", {}).status_code == 422
    no_study = api.post(
        f"/api/studies/{uid}/split",
        {"series_instance_uid": ct.SeriesInstanceUID, "target_study_uid": new_uid()},
    )
    assert no_study.status_code == 400
    done = api.post(f"/api/studies/{uid}/split", {"series_instance_uid": ct.SeriesInstanceUID})
    assert done.status_code == 200
    last = api.post(
        f"/api/studies/{done.json()['target_study_uid']}/split",
        {"series_instance_uid": ct.SeriesInstanceUID},
    )
    assert (last.status_code, last.json()["title"]) == (409, "ConflictingState")


def test_correcting_a_mistyped_accession_over_the_api_publishes_the_study(
    node: Pacsflow, api_token: str, tmp_path: Path
) -> None:
    p, o = scheduled(node)
    uid = str(o.study_instance_uid)
    _send(node, tmp_path, p, "CT_small.dcm", study_uid=new_uid(), accession="TYPO-1")
    api = Api(node, api_token)
    [exc] = api.get("/api/exceptions").json()
    assert exc["reason"] == "unknown_accession"
    pid = str(p.primary.value)
    assert _studies(node, tmp_path / "q0", pid) == {}

    assert api.post(f"/api/exceptions/{exc['id']}/correct", {}).status_code == 400
    res = api.post(f"/api/exceptions/{exc['id']}/correct", {"accession_number": "STILL-WRONG"})
    assert res.json()["state"] == "held"
    [still] = api.get("/api/exceptions").json()
    assert (still["id"], still["received_accession_number"]) == (exc["id"], "STILL-WRONG")
    fixed = api.post(
        f"/api/exceptions/{exc['id']}/correct", {"accession_number": o.accession_number}
    )
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["state"] == "published"
    [found] = _find(
        node, tmp_path / "q1", "STUDY", f"PatientID={pid}", "AccessionNumber", "StudyInstanceUID"
    )
    assert found.AccessionNumber == o.accession_number
    assert found.StudyInstanceUID != uid  # its own UID: the order's reserved one was not used

    # Undo goes backwards: the later correction first.
    first = res.json()["action_id"]
    assert api.post(f"/api/reconciliation/{first}/undo").status_code == 409
    back = api.post(f"/api/reconciliation/{fixed.json()['action_id']}/undo")
    assert back.json()["state"] == "held"
    assert _studies(node, tmp_path / "q2", pid) == {}
    assert api.post(f"/api/reconciliation/{first}/undo").status_code == 200
    [again] = api.get("/api/exceptions").json()
    assert again["received_accession_number"] == "TYPO-1"


def test_a_published_study_corrected_over_the_api_follows_its_new_identity(
    node: Pacsflow, receiver: Receiver, api_token: str, tmp_path: Path
) -> None:
    p, o = scheduled(node)
    o2 = f.order(p)
    place(node, cmd.PlaceOrder(o2, p))
    uid = str(o.study_instance_uid)
    _send(node, tmp_path, p, "CT_small.dcm", study_uid=uid, accession=o.accession_number)
    api = Api(node, api_token)
    res = api.post(f"/api/studies/{uid}/correct", {"accession_number": o2.accession_number})
    assert res.status_code == 200, res.text
    assert res.json()["state"] == "published"
    [moved] = _move(node, receiver, uid, 1)
    assert moved.AccessionNumber == o2.accession_number


def test_correct_and_split_from_the_cli(
    node: Pacsflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACSFLOW_DATA_DIR", str(node.settings.data_dir))
    p, o, _ct, mrs = _ct_and_mr(node, tmp_path)
    uid = str(o.study_instance_uid)

    def ok(*args: str) -> str:
        result = runner.invoke(cli, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    split = ok("studies", "split", uid, mrs[0].SeriesInstanceUID)
    assert f"study {uid} is published" in split
    new = split.split("to study ")[1].split(" ")[0]
    assert _studies(node, tmp_path / "q", str(p.primary.value)) == {
        uid: (1, 1, "CT"),
        new: (1, 2, "MR"),
    }
    action = split.split("(action ")[1].split(";")[0]
    assert ok("exceptions", "undo", action) == f"undid action {action}: the study is published\n"

    held = _send(node, tmp_path, p, "CT_small.dcm", study_uid=new_uid(), accession="TYPO-2")
    [exc] = node.queries.exceptions()
    assert exc.study_instance_uid == held.StudyInstanceUID
    fixed = ok("exceptions", "correct", str(exc.id), "--accession", o.accession_number)
    assert "the study is published" in fixed
    wrong = runner.invoke(cli, ["studies", "correct", held.StudyInstanceUID])
    assert wrong.exit_code == 1
    assert "already has these identifiers" in wrong.output
    missing = runner.invoke(cli, ["studies", "split", uid, new_uid()])
    assert (missing.exit_code, "has no series" in missing.output) == (1, True)


# --- queries by an identifier merged away -----------------------------------------------------


@pytest.fixture(params=["nothing", "redirect"])
def merged_node(
    request: pytest.FixtureRequest, tmp_path: Path, receiver: Receiver
) -> Iterator[Pacsflow]:
    settings = make_settings(
        tmp_path,
        peers=[DicomPeer(ae_title="DEST", host="127.0.0.1", port=receiver.port), *TOOL_PEERS],
        merged_id_queries=request.param,
    )
    n = Pacsflow(settings)
    n.start()
    yield n
    n.stop()


def test_findscu_by_a_merged_id_finds_nothing_or_the_survivor_as_configured(
    merged_node: Pacsflow, tmp_path: Path
) -> None:
    node = merged_node
    old = f.patient("OLD-Q1", family="Dvořák", given="Antonín", sex="M")
    survivor = f.patient("NEW-Q1", family="Novák", given="Jan", sex="M")
    o = f.order(old)
    place(node, cmd.RegisterPatient(survivor), cmd.PlaceOrder(o, old))
    _send(
        node,
        tmp_path,
        old,
        "CT_small.dcm",
        study_uid=str(o.study_instance_uid),
        accession=o.accession_number,
    )
    place(node, cmd.MergePatients(survivor, (old.primary,)))
    node.accounts.create_user("rita", [Role.RECONCILER])
    api = Api(node, node.accounts.create_token("rita", "tests"))

    by_old = _find(
        node, tmp_path / "s", "STUDY", "PatientID=OLD-Q1", "PatientName", "StudyInstanceUID"
    )
    patients = _find(node, tmp_path / "p", "PATIENT", "PatientID=OLD-Q1", "PatientName", root="-P")
    studies = api.get("/api/studies", patient_id="OLD-Q1").json()
    patient = api.get("/api/patients/OLD-Q1")
    if node.settings.merged_id_queries == "nothing":
        assert (by_old, patients, studies) == ([], [], [])
        assert patient.status_code == 404
    else:
        [study] = by_old
        assert (study.StudyInstanceUID, study.PatientID) == (o.study_instance_uid, "NEW-Q1")
        assert str(study.PatientName) == "Novák^Jan"  # the survivor's identity
        assert [d.PatientID for d in patients] == ["NEW-Q1"]
        assert [s["study_instance_uid"] for s in studies] == [o.study_instance_uid]
        assert patient.json()["patient"]["patient_id"] == "NEW-Q1"
    # The survivor's own ID finds the study either way.
    [found] = _find(node, tmp_path / "n", "STUDY", "PatientID=NEW-Q1", "StudyInstanceUID")
    assert found.StudyInstanceUID == o.study_instance_uid
