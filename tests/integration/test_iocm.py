"""IOCM rejection notes over DICOM: a KOS stored with storescu hides what it rejects."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from pacsflow.adapters.db.uow import SqlUnitOfWorkFactory
from pacsflow.app import Pacsflow
from pacsflow.domain import commands as cmd
from pacsflow.domain.audit import Action, EventId
from pacsflow.domain.audit_chain import from_canonical
from pacsflow.domain.orders import Order
from pacsflow.domain.rejections import RejectionReason
from pacsflow.domain.uids import Uid, new_uid
from tests import factories as f
from tests.conftest import Receiver, dcmtk, move_study, requires_dcmtk, restamp, storescu
from tests.iocm import rejection_note, save
from tests.receiving import receive

pytestmark = [pytest.mark.dcmtk, requires_dcmtk]


def _scheduled(node: Pacsflow) -> Order:
    p = f.patient(family="DOE", given="JANE")
    o = f.order(p)
    receive(node.intake, cmd.PlaceOrder(o, p), peer="test")
    return o


def _ct_study(node: Pacsflow, tmp_path: Path, o: Order, n: int = 2) -> list[tuple[Path, Dataset]]:
    """n CT images of one series of the order's study, as the modality stored them."""
    first, ds = restamp(
        "CT_small.dcm",
        tmp_path / "ct/1.dcm",
        patient_id=o.patient.value,
        issuer=o.patient.issuer,
        accession=o.accession_number,
        study_uid=o.study_instance_uid,
        name_pn="DOE^JANE",
        birth="19700102",
        sex="F",
    )
    images = [(first, ds)]
    for k in range(2, n + 1):
        more = dcmread(first)
        more.SOPInstanceUID = new_uid()
        more.file_meta.MediaStorageSOPInstanceUID = more.SOPInstanceUID
        more.InstanceNumber = k
        path = tmp_path / f"ct/{k}.dcm"
        more.save_as(path, enforce_file_format=True)
        images.append((path, more))
    res = storescu(node.dicom.port, *(p for p, _ in images))
    assert res.returncode == 0, res.stderr
    return images


def _find(node: Pacsflow, out: Path, level: str, *keys: str) -> list[Dataset]:
    out.mkdir(parents=True)
    args: list[str | Path | int] = ["findscu", "-S", "-aec", "PACSFLOW", "-X", "-od", out]
    for key in (f"QueryRetrieveLevel={level}", *keys):
        args += ["-k", key]
    res = dcmtk(*args, "127.0.0.1", node.dicom.port)
    assert res.returncode == 0, res.stderr
    return [dcmread(x) for x in sorted(out.glob("rsp*.dcm"))]


def _reject(node: Pacsflow, tmp_path: Path, rejected: list[Dataset], code: str) -> Dataset:
    kos = rejection_note(rejected, code=code)
    res = storescu(node.dicom.port, save(kos, tmp_path / f"kos/{kos.SOPInstanceUID}.dcm"))
    assert res.returncode == 0, res.stdout + res.stderr
    return kos


def _studies(node: Pacsflow, token: str) -> list[dict[str, object]]:
    answer = httpx.get(
        f"http://127.0.0.1:{node.http.port}/api/studies",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    body: list[dict[str, object]] = answer.json()
    return body


def test_rejection_notes_hide_instances_from_query_retrieve_and_the_api(
    node: Pacsflow, receiver: Receiver, api_token: str, tmp_path: Path
) -> None:
    o = _scheduled(node)
    (path_a, a), (_, b) = _ct_study(node, tmp_path, o)
    study = f"StudyInstanceUID={o.study_instance_uid}"
    assert len(_find(node, tmp_path / "f0", "IMAGE", study, "SOPInstanceUID")) == 2

    # 113001 for one image: one left everywhere, and the note itself is never listed.
    kos = _reject(node, tmp_path, [a], "113001")
    images = _find(node, tmp_path / "f1", "IMAGE", study, "SOPInstanceUID", "Modality")
    assert [d.SOPInstanceUID for d in images] == [b.SOPInstanceUID]
    [series] = _find(node, tmp_path / "f2", "SERIES", study, "NumberOfSeriesRelatedInstances")
    assert series.NumberOfSeriesRelatedInstances == 1
    [found] = _find(
        node,
        tmp_path / "f3",
        "STUDY",
        study,
        "NumberOfStudyRelatedInstances",
        "ModalitiesInStudy",
    )
    assert found.NumberOfStudyRelatedInstances == 1
    assert found.ModalitiesInStudy == "CT"
    [listed] = _studies(node, api_token)
    assert listed["instance_count"] == 1

    moved = move_study(node.dicom.port, str(o.study_instance_uid), receiver)
    assert [d.SOPInstanceUID for d in moved] == [b.SOPInstanceUID]

    # Sending the rejected image again is refused: 0xA771, as dcm4chee-arc answers.
    again = dcmtk("storescu", "-d", "-aec", "PACSFLOW", "127.0.0.1", node.dicom.port, path_a)
    assert "0xa771" in (again.stdout + again.stderr).lower()

    # 113039 for the rest: the study leaves every clinical list, and nothing is deleted.
    _reject(node, tmp_path, [b], "113039")
    assert _find(node, tmp_path / "f4", "STUDY", study) == []
    assert _find(node, tmp_path / "f5", "STUDY", "PatientID") == []
    assert _studies(node, api_token) == []

    uow = SqlUnitOfWorkFactory(node.engine)
    with uow(read_only=True) as u:
        first = u.studies.rejection(Uid(a.SOPInstanceUID))
        second = u.studies.rejection(Uid(b.SOPInstanceUID))
        assert u.studies.has_instance(Uid(a.SOPInstanceUID))
        assert u.studies.has_instance(Uid(kos.SOPInstanceUID))
        events = [from_canonical(r.canonical) for r in u.audit.search(limit=100)]
    assert first is not None
    assert (first.reason, first.rejected_by) == (RejectionReason.QUALITY, kos.SOPInstanceUID)
    assert second is not None
    assert second.reason is RejectionReason.RETENTION_EXPIRED
    rejections = [
        e for e in events if e.event_id is EventId.INSTANCES_ACCESSED and e.action is Action.DELETE
    ]
    assert len(rejections) == 2
    assert all(e.requestor.user_id == "STORESCU" for e in rejections)
