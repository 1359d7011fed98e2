"""Working the exceptions queue over HTTP and the CLI: owners, targets, candidates, report."""

from __future__ import annotations

import csv
import getpass
import io
import json
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from pacsflow.adapters.db.audit import audit_records
from pacsflow.adapters.db.tables import exceptions as exceptions_table
from pacsflow.app import Pacsflow
from pacsflow.cli import CliContext
from pacsflow.cli import app as cli
from pacsflow.domain.access import Role
from pacsflow.domain.reports import Report, ReportStatus
from pacsflow.domain.uids import Uid
from tests.api_client import Api
from tests.conftest import make_settings, requires_dcmtk, restamp, storescu
from tests.fakes import RunningClock
from tests.scheduling import scheduled

pytestmark = [pytest.mark.dcmtk, requires_dcmtk]

runner = CliRunner()


def _send(node: Pacsflow, tmp: Path, name: str, **kw: str) -> str:
    path, ds = restamp("CT_small.dcm", tmp / f"{name}.dcm", **kw)
    assert storescu(node.dicom.port, path).returncode == 0
    return str(ds.StudyInstanceUID)


def _age(node: Pacsflow, exception_id: int, hours: float) -> None:
    """Make an exception look opened `hours` ago (waiting in a test is not an option)."""
    with node.engine.begin() as conn:
        conn.execute(
            sa.update(exceptions_table)
            .where(exceptions_table.c.pk == exception_id)
            .values(opened_at=node.clock.now() - timedelta(hours=hours))
        )


def test_owners_targets_candidates_and_the_report_over_the_api(
    node: Pacsflow, api_token: str, tmp_path: Path, clock: RunningClock
) -> None:
    clock.freeze()  # everything happens on one day, however close to midnight the run starts
    api = Api(node, api_token)
    p, o = scheduled(node)
    pid = str(p.primary.value)
    typo_uid = _send(
        node, tmp_path, "typo", patient_id=pid, accession=f"{o.accession_number}9",
        name_pn="Dvořák^Antonín", birth="19700102", sex="M",
    )  # fmt: skip
    walk_in_uid = _send(node, tmp_path, "walkin", patient_id="NOBODY-1")

    listed = api.get("/api/exceptions").json()
    assert [e["study_instance_uid"] for e in listed] == [typo_uid, walk_in_uid]  # oldest first
    typo, walk_in = listed
    assert (typo["reason"], typo["target_minutes"], typo["owner"]) == ("unknown_accession", 240, "")
    assert typo["overdue"] is False
    assert (walk_in["reason"], walk_in["target_minutes"]) == ("unknown_patient", 240)
    _age(node, walk_in["id"], 26)  # opened yesterday, whatever the time of day
    overdue_first = api.get("/api/exceptions").json()
    assert [(e["id"], e["overdue"]) for e in overdue_first] == [
        (walk_in["id"], True),
        (typo["id"], False),
    ]
    assert overdue_first[0]["age_seconds"] >= 26 * 3600 - 60

    owned = api.post(f"/api/exceptions/{typo['id']}/assign-owner", {"owner": "tester"})
    assert owned.status_code == 200, owned.text
    assert owned.json()["state"] == "held"
    assert api.get("/api/exceptions").json()[1]["owner"] == "tester"
    nobody = api.post(f"/api/exceptions/{typo['id']}/assign-owner", {"owner": "nobody"})
    assert nobody.status_code == 400
    assert nobody.json()["detail"] == "no active user 'nobody'"
    assert api.post(f"/api/exceptions/{typo['id']}/assign-owner", {}).status_code == 422
    undone = api.post(f"/api/reconciliation/{owned.json()['action_id']}/undo")
    assert undone.json()["state"] == "held"
    assert api.get("/api/exceptions").json()[1]["owner"] == ""

    candidates = api.get(f"/api/exceptions/{typo['id']}/candidates")
    assert candidates.status_code == 200, candidates.text
    best, *rest = candidates.json()
    assert (best["kind"], best["accession_number"]) == ("order", o.accession_number)
    assert best["patient"]["patient_id"] == pid
    codes = {r["code"] for r in best["reasons"]}
    assert {"near_accession", "same_patient_id", "same_name", "same_birth_date"} <= codes
    assert ("patient", pid) in {(c["kind"], c["patient"]["patient_id"]) for c in rest}
    assert api.get("/api/exceptions/999999/candidates").status_code == 400

    accession = {"accession_number": best["accession_number"]}
    matched = api.post(f"/api/exceptions/{typo['id']}/match", accession)
    assert matched.json()["state"] == "published"
    rejected = api.post(f"/api/exceptions/{walk_in['id']}/reject", {"reason": "test"})
    api.post(f"/api/reconciliation/{rejected.json()['action_id']}/undo")

    clock.advance(1)  # today's report counts up to now, excluded
    report = api.get("/api/exceptions/report")
    assert report.status_code == 200, report.text
    assert report.json()["day"] == clock.now().date().isoformat()  # today in UTC
    total = report.json()["total"]
    assert (total["opened"], total["resolved"], total["matched"]) == (1, 1, 1)
    assert (total["rejected"], total["undone"], total["open_at_end"]) == (1, 1, 1)
    assert total["overdue_at_end"] == 1
    assert total["median_seconds"] is not None
    day = report.json()["day"]
    as_csv = api.get("/api/exceptions/report", day=day, format="csv")
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert f"exceptions-{day}.csv" in as_csv.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert rows[-1]["reason"] == "all"
    assert rows[-1]["opened"] == "1"
    assert api.get("/api/exceptions/report", tz="Mars/Olympus").status_code == 400
    assert api.get("/api/exceptions/report", day="2999-01-01").status_code == 400
    assert api.get("/api/exceptions/report", format="xml").status_code == 422
    # Today in Honolulu is the UTC day or the one before it (before 10:00 UTC); its report
    # starts at midnight there, 10:00 UTC. Tomorrow there has not begun, at any hour.
    today_there = clock.now().astimezone(ZoneInfo("Pacific/Honolulu")).date()
    honolulu = api.get("/api/exceptions/report", day=str(today_there), tz="Pacific/Honolulu")
    assert honolulu.status_code == 200, honolulu.text
    start_there = datetime.fromisoformat(honolulu.json()["start"])
    assert start_there == datetime.combine(today_there, time(10), UTC)
    assert honolulu.json()["total"]["opened"] == 1
    tomorrow_there = str(today_there + timedelta(days=1))
    early = api.get("/api/exceptions/report", day=tomorrow_there, tz="Pacific/Honolulu")
    assert early.status_code == 400
    assert early.json()["detail"] == f"{tomorrow_there} has not begun yet"


def test_the_queue_from_the_cli(
    node: Pacsflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: RunningClock
) -> None:
    clock.freeze()  # the day's report counts everything, however close to midnight
    monkeypatch.setenv("PACSFLOW_DATA_DIR", str(node.settings.data_dir))
    node.accounts.create_user("rita", [Role.RECONCILER])
    p, o = scheduled(node)
    pid = str(p.primary.value)
    uid = _send(
        node, tmp_path, "walkin", patient_id=pid, name_pn="Dvořák^Antonín", birth="19700102"
    )
    # A report that came before the study was reconciled waits for it to be published.
    waiting = Report("", ReportStatus.PRELIMINARY, "no acute findings", study_instance_uid=uid)
    assert node.results.receive(waiting, "test").attached_study_uid is None

    at_the_node = CliContext(clock)

    def ok(*args: str) -> str:
        result = runner.invoke(cli, ["exceptions", *args], obj=at_the_node)
        assert result.exit_code == 0, result.output
        return result.output

    listed = ok("list")
    assert "no_order" in listed
    assert listed.splitlines()[-1] == "1 open, 0 overdue"
    [item] = [json.loads(line) for line in ok("list", "--json").splitlines()]
    exc_id = str(item["id"])
    assert (item["reason"], item["target_minutes"], item["overdue"]) == ("no_order", 240, False)

    suggested = ok("candidates", exc_id)
    assert f"pacsflow exceptions assign {exc_id} {pid} --issuer HOSP" in suggested
    assert f"pacsflow exceptions match {exc_id} {o.accession_number}" in suggested
    assert json.loads(ok("candidates", exc_id, "--json").splitlines()[0])["score"] > 0

    assert f"exception {exc_id} is owned by rita" in ok("owner", exc_id, "rita")
    assert "rita" in ok("list")
    assigned = ok("assign", exc_id, pid, "--issuer", "HOSP")
    assert "the study is published" in assigned
    # ... and publishing from the CLI starts what waits for it, as on the node.
    assert [r.attached_study_uid for r in node.results.reports_of(Uid(uid))] == [uid]
    action = assigned.split("(action ")[1].split(";")[0]
    assert ok("undo", action) == f"undid action {action}: the study is held\n"
    wrong = runner.invoke(cli, ["exceptions", "match", exc_id, "NO-SUCH-ORDER"], obj=at_the_node)
    assert wrong.exit_code == 1
    assert "no order has accession number 'NO-SUCH-ORDER'" in wrong.output
    assert "the study is rejected" in ok("reject", exc_id, "--reason", "test image")
    assert ok("list") == "no open exceptions\n"

    clock.advance(1)  # today's report counts up to now, excluded
    report = json.loads(ok("report", "--format", "json"))
    assert report["day"] == clock.now().date().isoformat()
    total = report["total"]
    assert (total["opened"], total["resolved"], total["assigned"]) == (1, 1, 1)
    assert (total["undone"], total["rejected"], total["open_at_end"]) == (1, 1, 0)
    header = ok("report", "--day", report["day"]).splitlines()[0]
    assert header.startswith("reason,source,opened,resolved,matched,assigned,rejected,undone")
    bad = runner.invoke(cli, ["exceptions", "report", "--day", "yesterday"], obj=at_the_node)
    assert bad.exit_code == 2

    me = f"{getpass.getuser()}@cli"
    with node.engine.connect() as conn:
        users = conn.execute(
            sa.select(audit_records.c.user_id).where(audit_records.c.event_id == "110103")
        ).all()
    assert [u[0] for u in users] == [me] * 4  # owner, assign, undo, reject


#: 01:18 UTC, when the issue saw the report fail: the day before in Honolulu (UTC-10).
EARLY_UTC = datetime(2026, 12, 6, 1, 18, tzinfo=UTC)


def test_today_in_honolulu_before_10_utc_is_the_day_before_over_the_api(tmp_path: Path) -> None:
    clock = RunningClock(EARLY_UTC)
    clock.freeze()
    node = Pacsflow(make_settings(tmp_path), clock)
    node.start()
    try:
        node.accounts.create_user("tester", [Role.RECONCILER])
        api = Api(node, node.accounts.create_token("tester", "tests"))
        _send(node, tmp_path, "walkin", patient_id="NOBODY-1")
        clock.advance(1)
        honolulu = api.get("/api/exceptions/report", tz="Pacific/Honolulu")
        assert honolulu.status_code == 200, honolulu.text
        assert honolulu.json()["day"] == "2026-12-05"
        assert honolulu.json()["total"]["opened"] == 1
        utc_day = api.get("/api/exceptions/report", day="2026-12-06", tz="Pacific/Honolulu")
        assert utc_day.status_code == 400
        assert utc_day.json()["detail"] == "2026-12-06 has not begun yet"
    finally:
        node.stop()


def test_the_cli_reports_the_day_of_its_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACSFLOW_DATA_DIR", str(tmp_path / "data"))
    at = CliContext(RunningClock(EARLY_UTC))
    for tz, day in (("UTC", "2026-12-06"), ("Pacific/Honolulu", "2026-12-05")):
        result = runner.invoke(cli, ["exceptions", "report", "-f", "json", "--tz", tz], obj=at)
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["day"] == day


@pytest.mark.parametrize(
    "command", ["list", "candidates", "match", "assign", "reject", "undo", "owner", "report"]
)
def test_every_exceptions_command_explains_itself(command: str) -> None:
    result = runner.invoke(cli, ["exceptions", command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
