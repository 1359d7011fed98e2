"""Prefetch of priors from a real Orthanc archive when an order arrives."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import dcmread

from pacsflow.app import Pacsflow
from pacsflow.config import DicomPeer
from pacsflow.domain import commands as cmd
from pacsflow.domain.access import Role
from pacsflow.domain.prefetch import PriorState
from pacsflow.domain.studies import StudyFilter
from pacsflow.domain.uids import new_uid
from tests import factories as f
from tests.conftest import make_settings, sample
from tests.peers.orthanc import OrthancPeer
from tests.scheduling import place
from tests.waiting import wait_until

pytestmark = [pytest.mark.orthanc]

ORDER_DAY = date(2026, 11, 28)  # factories.order's scheduled start


def _prior(
    orthanc: OrthancPeer,
    tmp: Path,
    patient_id: str,
    days_ago: int,
    modality: str,
    *,
    body_part: str | None = None,
    issuer: str | None = "HOSP",
) -> str:
    """Upload a study of the patient to Orthanc; its Study Instance UID."""
    ds = dcmread(sample("CT_small.dcm" if modality == "CT" else "MR_small.dcm"))
    ds.PatientID = patient_id
    if issuer is None:
        ds.pop("IssuerOfPatientID", None)
    else:
        ds.IssuerOfPatientID = issuer
    if body_part is not None:
        ds.BodyPartExamined = body_part
    ds.StudyInstanceUID = new_uid()
    ds.SeriesInstanceUID = new_uid()
    ds.SOPInstanceUID = new_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyDate = (ORDER_DAY - timedelta(days=days_ago)).strftime("%Y%m%d")
    ds.AccessionNumber = f"OLD{days_ago}"
    ds.Modality = modality
    path = tmp / f"{ds.StudyInstanceUID}.dcm"
    ds.save_as(path)
    orthanc.upload(path)
    return str(ds.StudyInstanceUID)


@contextmanager
def _prefetching(
    tmp_path: Path, orthanc: OrthancPeer, *, query_with_issuer: bool = True, **settings: Any
) -> Iterator[Pacsflow]:
    """A node that fetches priors from the Orthanc fixture (which knows it as PACSFLOW)."""
    peer = DicomPeer(
        ae_title="ORTHANC",
        host="127.0.0.1",
        port=orthanc.dicom_port,
        query_with_issuer=query_with_issuer,
    )
    node = Pacsflow(
        make_settings(
            tmp_path,
            peers=[peer],
            prefetch_archives=["ORTHANC"],
            job_poll_seconds=0.05,
            **settings,
        )
    )
    node.start()
    try:
        orthanc.add_modality("PACSFLOW", "PACSFLOW", "127.0.0.1", node.dicom.port)
        yield node
    finally:
        node.stop()


@pytest.fixture
def prefetching(tmp_path: Path, orthanc: OrthancPeer) -> Iterator[Pacsflow]:
    """A node that fetches priors from the Orthanc fixture (which knows it as PACSFLOW)."""
    with _prefetching(tmp_path, orthanc) as node:
        yield node


def _done(node: Pacsflow, key: str, count: int) -> Callable[[], bool]:
    def done() -> bool:
        priors = node.prefetch.priors(key)
        return len(priors) == count and all(x.state is PriorState.DONE for x in priors)

    return done


def test_priors_of_every_linked_identifier_are_prefetched_when_an_order_arrives(
    tmp_path: Path, orthanc: OrthancPeer, prefetching: Pacsflow
) -> None:
    node = prefetching
    p = f.patient("PF100")
    place(node, cmd.RegisterPatient(p))
    place(node, cmd.MergePatients(p, (f.identifier("OLD100", "HOSP"),)))
    wanted = {
        _prior(orthanc, tmp_path, "PF100", 100, "CT"),
        _prior(orthanc, tmp_path, "OLD100", 500, "CT"),  # under the merged identifier
        _prior(orthanc, tmp_path, "PF100", 1000, "CT"),
    }
    unwanted = {
        _prior(orthanc, tmp_path, "PF100", 1400, "CT"),  # a fourth: only 3 are taken
        _prior(orthanc, tmp_path, "PF100", 3000, "CT"),  # older than 5 years
        _prior(orthanc, tmp_path, "PF100", 50, "MR"),  # another modality
        _prior(orthanc, tmp_path, "SOMEONE", 10, "CT"),  # another patient
    }
    order = f.order(p)
    place(node, cmd.PlaceOrder(order, p))
    key = f"order:{order.accession_number}"

    def fetched() -> bool:
        priors = node.prefetch.priors(key)
        return len(priors) == 3 and all(x.state is PriorState.DONE for x in priors)

    assert wait_until(fetched, timeout=30), (node.prefetch.priors(key), node.jobs.list())
    priors = node.prefetch.priors(key)
    assert {x.study_instance_uid for x in priors} == wanted
    assert all(x.instances == 1 and (x.latency or -1) >= 0 for x in priors)
    local = {
        v.study.study_instance_uid
        for v in node.queries.studies(StudyFilter(patient=p.primary, limit=100))
    }
    assert wanted <= local  # published under the patient, not held as exceptions
    assert not unwanted & local
    assert node.queries.exceptions(100) == []

    node.accounts.create_user("rad", [Role.RADIOLOGIST])
    token = node.accounts.create_token("rad", "t", None)
    r = httpx.get(
        f"http://127.0.0.1:{node.http.port}/api/priors",
        params={"accession_number": str(order.accession_number)},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    assert sorted(x["state"] for x in r.json()) == ["done"] * 3
    assert all(x["archive"] == "ORTHANC" for x in r.json())


def test_a_prior_that_is_already_local_is_not_fetched_again(
    tmp_path: Path, orthanc: OrthancPeer, prefetching: Pacsflow
) -> None:
    node = prefetching
    p = f.patient("PF200")
    place(node, cmd.RegisterPatient(p))
    uid = _prior(orthanc, tmp_path, "PF200", 30, "CT")
    first = f.order(p)
    place(node, cmd.PlaceOrder(first, p))
    assert wait_until(
        lambda: (
            [x.state for x in node.prefetch.priors(f"order:{first.accession_number}")]
            == [PriorState.DONE]
        ),
        timeout=30,
    )
    second = f.order(p)
    place(node, cmd.PlaceOrder(second, p))
    assert wait_until(
        lambda: (
            [x.state for x in node.prefetch.priors(f"order:{second.accession_number}")]
            == [PriorState.LOCAL]
        ),
        timeout=30,
    )
    [local] = node.prefetch.priors(f"order:{second.accession_number}")
    assert local.study_instance_uid == uid


def test_an_order_fetches_only_the_priors_of_the_body_part_its_procedure_names(
    tmp_path: Path, orthanc: OrthancPeer
) -> None:
    """A CT chest order with a same_body_part rule: chest CTs, not every CT of the patient."""
    rule = {"procedure_code": "CTCHEST", "same_body_part": True, "max_priors": 5}
    with _prefetching(tmp_path, orthanc, prefetch_rules=[rule]) as node:
        p = f.patient("PF300")
        place(node, cmd.RegisterPatient(p))
        wanted = {
            _prior(orthanc, tmp_path, "PF300", 100, "CT", body_part="CHEST"),
            _prior(orthanc, tmp_path, "PF300", 200, "CT", body_part="LUNG"),
        }
        unwanted = {
            _prior(orthanc, tmp_path, "PF300", 50, "CT", body_part="HEAD"),
            _prior(orthanc, tmp_path, "PF300", 60, "CT", body_part="KNEE"),
        }
        # The factories' order: procedure code CTCHEST "CT chest", no body part mapping set.
        order = f.order(p)
        place(node, cmd.PlaceOrder(order, p))
        key = f"order:{order.accession_number}"
        assert wait_until(_done(node, key, 2), timeout=30), (
            node.prefetch.priors(key),
            node.jobs.list(),
        )
        assert {x.study_instance_uid for x in node.prefetch.priors(key)} == wanted
        local = {
            v.study.study_instance_uid
            for v in node.queries.studies(StudyFilter(patient=p.primary, limit=100))
        }
        assert wanted <= local
        assert not unwanted & local


@pytest.mark.parametrize("query_with_issuer", [True, False])
def test_an_archive_searched_by_patient_id_only_finds_priors_stored_without_an_issuer(
    tmp_path: Path, orthanc: OrthancPeer, query_with_issuer: bool
) -> None:
    with _prefetching(tmp_path, orthanc, query_with_issuer=query_with_issuer) as node:
        p = f.patient("PF400")
        place(node, cmd.RegisterPatient(p))
        with_issuer = _prior(orthanc, tmp_path, "PF400", 100, "CT")
        without = _prior(orthanc, tmp_path, "PF400", 200, "CT", issuer=None)
        # Same Patient ID under another issuer: another patient, never fetched.
        _prior(orthanc, tmp_path, "PF400", 150, "CT", issuer="OTHERHOSP")
        order = f.order(p)
        place(node, cmd.PlaceOrder(order, p))
        key = f"order:{order.accession_number}"
        wanted = {with_issuer} | ({without} if not query_with_issuer else set())
        assert wait_until(_done(node, key, len(wanted)), timeout=30), node.prefetch.priors(key)
        assert {x.study_instance_uid for x in node.prefetch.priors(key)} == wanted
