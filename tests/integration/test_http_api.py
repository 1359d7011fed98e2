"""The HTTP API over a running node: JSON shapes, filters, problem details."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from pacsflow.app import Pacsflow
from pacsflow.domain import commands as cmd
from pacsflow.domain.orders import OrderStatus
from tests.conftest import requires_dcmtk, restamp, storescu
from tests.scheduling import place, scheduled

pytestmark = [pytest.mark.dcmtk, requires_dcmtk]


def _get(node: Pacsflow, path: str, token: str = "", **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(
        f"http://127.0.0.1:{node.http.port}{path}", params=params, headers=headers, timeout=10
    )


def test_studies_orders_patients_and_exceptions(
    node: Pacsflow, api_token: str, tmp_path: Path
) -> None:
    p, o = scheduled(node)
    _, cancelled = scheduled(node)
    place(node, cmd.CancelOrder(cancelled.accession_number))
    path, ds = restamp(
        "CT_small.dcm",
        tmp_path / "a.dcm",
        patient_id=p.primary.value,
        accession=o.accession_number,
        name_pn="Dvořák^Antonín",
        birth="19700102",
        sex="M",
    )
    walkin, _ = restamp("MR_small.dcm", tmp_path / "b.dcm", patient_id=p.primary.value)
    assert storescu(node.dicom.port, path, walkin).returncode == 0

    studies = _get(node, "/api/studies", api_token).json()
    assert [s["study_instance_uid"] for s in studies] == [ds.StudyInstanceUID]
    assert studies[0]["patient"]["name"] == "Dvořák, Antonín"
    assert studies[0]["modalities"] == ["CT"]
    assert len(_get(node, "/api/studies", api_token, include_held="true").json()) == 2
    assert _get(node, "/api/studies", api_token, accession_number="nope").json() == []
    by_patient = _get(
        node, "/api/studies", api_token, patient_id=p.primary.value, issuer="HOSP"
    ).json()
    assert len(by_patient) == 1

    one = _get(node, f"/api/studies/{ds.StudyInstanceUID}", api_token)
    assert one.status_code == 200
    assert one.json()["state"] == "published"
    missing = _get(node, "/api/studies/1.2.3", api_token)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"

    [exc] = _get(node, "/api/exceptions", api_token).json()
    assert (exc["reason"], exc["source"]) == ("no_order", "modality_entry")

    orders = _get(node, "/api/orders", api_token).json()
    assert {x["status"] for x in orders} == {"scheduled", "cancelled"}
    only = _get(node, "/api/orders", api_token, status=OrderStatus.CANCELLED.value).json()
    assert [x["accession_number"] for x in only] == [cancelled.accession_number]

    detail = _get(node, f"/api/patients/{p.primary.value}", api_token, issuer="HOSP").json()
    assert detail["patient"]["birth_date"] == "1970-01-02"
    assert [s["study_instance_uid"] for s in detail["studies"]] == [ds.StudyInstanceUID]
    assert _get(node, "/api/patients/x", api_token, issuer="OTHER").status_code == 404


def test_openapi_and_health(node: Pacsflow) -> None:
    assert _get(node, "/healthz").json() == {
        "status": "ok",
        "listeners": {"dicom": "up", "hl7": "up", "http": "up"},
    }
    paths = _get(node, "/openapi.json").json()["paths"]
    assert {"/api/studies", "/api/exceptions", "/api/orders", "/healthz"} <= set(paths)


def test_health_is_503_when_a_listener_is_down(node: Pacsflow) -> None:
    node.hl7.stop()
    res = _get(node, "/healthz")
    assert res.status_code == 503
    assert res.json()["listeners"]["hl7"] == "down"


def test_limits_are_validated(node: Pacsflow, api_token: str) -> None:
    res = _get(node, "/api/studies", api_token, limit="0")
    assert res.status_code == 422


def test_reconciliation_over_the_api_publishes_and_undo_hides_again(
    node: Pacsflow, api_token: str, tmp_path: Path
) -> None:
    p, o = scheduled(node)
    path, ds = restamp("CT_small.dcm", tmp_path / "t.dcm", patient_id=p.primary.value,
                       accession="TYPO1")  # fmt: skip
    assert storescu(node.dicom.port, path).returncode == 0
    [exc] = _get(node, "/api/exceptions", api_token).json()
    base = f"http://127.0.0.1:{node.http.port}"
    auth = {"Authorization": f"Bearer {api_token}"}
    res = httpx.post(
        f"{base}/api/exceptions/{exc['id']}/match",
        json={"accession_number": o.accession_number},
        headers=auth,
    )
    assert res.status_code == 200, res.text
    assert res.json()["state"] == "published"
    [study] = _get(node, "/api/studies", api_token).json()
    assert study["study_instance_uid"] == ds.StudyInstanceUID
    again = httpx.post(
        f"{base}/api/exceptions/{exc['id']}/match",
        json={"accession_number": o.accession_number},
        headers=auth,
    )
    assert again.status_code == 409
    undone = httpx.post(f"{base}/api/reconciliation/{res.json()['action_id']}/undo", headers=auth)
    assert undone.json()["state"] == "held"
    assert _get(node, "/api/studies", api_token).json() == []
    bad = httpx.post(f"{base}/api/exceptions/{exc['id']}/reject", json={}, headers=auth)
    assert bad.status_code == 422
