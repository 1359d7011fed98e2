"""Every kind of access leaves an audit record; tampering is caught by `pacsflow audit verify`."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import dcmtk, requires_dcmtk, restamp, storescu
from tests.e2e.conftest import Served
from tests.e2e.test_workflow_paths import ADT, ORM

pytestmark = [pytest.mark.dcmtk, requires_dcmtk]


def _cli(served: Served, *args: str) -> subprocess.CompletedProcess[str]:
    config = served.data_dir.parent / "pacsflow.toml"
    return subprocess.run(
        [sys.executable, "-m", "pacsflow", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        env={"PACSFLOW_FAST_HASHING_FOR_TESTS": "1", "PATH": "/usr/bin:/bin"},
    )


def _events(db: Path) -> list[tuple[str, str, int, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "select event_id, action, outcome, user_id from audit_records order by id"
        ).fetchall()


def test_each_kind_of_access_is_audited_and_tampering_is_caught(
    served: Served, tmp_path: Path
) -> None:
    served.send_hl7(ADT, ORM)  # identity and order changes
    path, _ = restamp("CT_small.dcm", tmp_path / "a.dcm", patient_id="12345", accession="ACC1001")
    assert storescu(served.dicom_port, path).returncode == 0
    out = tmp_path / "q"
    out.mkdir()
    dcmtk(
        "findscu", "-S", "-aec", "PACSFLOW", "-k", "QueryRetrieveLevel=STUDY",
        "-k", "PatientID=12345", "127.0.0.1", served.dicom_port,
    )  # fmt: skip
    served.get("/api/studies")  # an API read of patient data
    bad = httpx.get(
        served.http + "/api/studies", headers={"Authorization": "Bearer pf_bad"}, timeout=10
    )
    assert bad.status_code == 401
    assert _cli(served, "users", "create", "auditor1", "--role", "auditor").returncode == 0
    auditor = _cli(served, "tokens", "create", "auditor1").stdout.strip()
    found = httpx.get(
        served.http + "/api/audit/events",
        params={"patient_id": "12345"},
        headers={"Authorization": f"Bearer {auditor}"},
        timeout=10,
    )
    assert found.status_code == 200
    assert {e["event"]["event_id"] for e in found.json()} >= {"110110", "110109"}
    refused = served.get("/api/audit/events")  # a reconciler may not read the audit log
    assert refused.status_code == 403

    db = served.data_dir / "pacsflow.db"
    kinds = {(event, action, outcome) for event, action, outcome, _ in _events(db)}
    assert ("110100", "E", 0) in kinds  # application start
    assert ("110110", "C", 0) in kinds  # patient registered (ADT)
    assert ("110109", "C", 0) in kinds  # order placed (ORM)
    assert ("110112", "E", 0) in kinds  # queries: C-FIND and the API read
    assert ("110104", "C", 0) in kinds  # instances stored (one event per study and association)
    assert ("110114", "E", 4) in kinds  # failed authentication
    assert ("110101", "R", 0) in kinds  # the auditor's search
    assert ("110101", "R", 4) in kinds  # the refused audit read
    assert ("110113", "E", 0) in kinds  # users and tokens created (security configuration)
    users = {user for *_, user in _events(db)}
    assert {"HIS", "RIS", "FINDSCU", "e2e", "auditor1"} <= users

    ok = _cli(served, "audit", "verify")
    assert ok.returncode == 0, ok.stderr

    # An attacker with database access rewrites history: the chain shows it.
    with sqlite3.connect(db) as conn:
        conn.execute("drop trigger audit_records_no_update")
        conn.execute(
            "update audit_records set canonical = replace(canonical, '12345', '99999') "
            "where id = (select min(id) from audit_records where canonical like '%12345%')"
        )
    broken = _cli(served, "audit", "verify")
    assert broken.returncode == 1
    assert "record" in (broken.stdout + broken.stderr).lower()
