"""`pacsflow routing`: save, list, show, diff, activate, roll back and dry-run from the CLI."""

from __future__ import annotations

import getpass
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pacsflow.app import Pacsflow
from pacsflow.cli import CliContext, app
from pacsflow.config import DicomPeer
from pacsflow.domain.studies import StudyFilter
from tests.conftest import make_settings, requires_dcmtk, restamp, storescu
from tests.fakes import RunningClock
from tests.scheduling import scheduled

runner = CliRunner()

CT_TO_ORTHANC = """\
rules:
  - name: ct-to-orthanc
    when: {Modality: CT}
    send_to: ORTHANC
"""

MR_TO_ORTHANC = """\
rules:
  - name: mr-to-orthanc
    when:
      Modality: MR
    send_to: [ORTHANC]
"""

#: Unreachable peers: the rules only need destinations that are configured.
PEERS = [
    DicomPeer(ae_title="ORTHANC", host="127.0.0.1", port=9),
    DicomPeer(ae_title="ARCHIVE", host="127.0.0.1", port=9),
]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI's settings from the environment: a data dir in tmp_path and the peers."""
    monkeypatch.setenv("PACSFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PACSFLOW_PEERS", json.dumps([p.model_dump() for p in PEERS]))
    return tmp_path / "data"


def _ok(*args: str, stdin: str | None = None, obj: CliContext | None = None) -> str:
    result = runner.invoke(app, ["routing", *args], input=stdin, obj=obj)
    assert result.exit_code == 0, result.output
    return result.output


def _listed(output: str) -> list[tuple[str, str, str]]:
    """(version, active mark, author) per row of `routing list`."""
    rows = []
    for line in output.splitlines()[1:]:
        number, rest = line.split(maxsplit=1)
        mark = "*" if rest.startswith("*") else ""
        rows.append((number, mark, rest.lstrip("* ").split()[0]))
    return rows


@pytest.mark.parametrize(
    "command", ["list", "show", "save", "activate", "rollback", "diff", "dry-run"]
)
def test_every_routing_command_explains_itself(command: str) -> None:
    result = runner.invoke(app, ["routing", command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_versions_are_saved_listed_shown_compared_activated_and_rolled_back(
    data_dir: Path, tmp_path: Path
) -> None:
    me = f"{getpass.getuser()}@cli"
    assert _ok("list") == "no routing rules saved yet\n"
    rules = tmp_path / "ct.yaml"
    rules.write_text(CT_TO_ORTHANC, encoding="utf-8")

    assert _ok("save", str(rules), "--comment", "CT to the archive") == "saved version 1\n"
    listed = _ok("list")
    assert _listed(listed) == [("1", "", me)]
    assert listed.splitlines()[1].endswith("CT to the archive")
    assert _ok("show", "1") == CT_TO_ORTHANC  # as saved, ready to edit and save again
    none_active = runner.invoke(app, ["routing", "show"])
    assert none_active.exit_code == 1
    assert "no routing rules are active" in none_active.output

    saved = _ok("save", "-", "--activate", "-m", "MR instead", stdin=MR_TO_ORTHANC)
    assert saved == "saved version 2 and activated it\n"
    assert _listed(_ok("list")) == [("2", "*", me), ("1", "", me)]
    assert _ok("show") == MR_TO_ORTHANC

    diff = _ok("diff", "1", "2")
    assert diff.startswith("--- version 1\n+++ version 2\n")
    assert "-      Modality: {equals: CT}\n+      Modality: {equals: MR}\n" in diff
    same = runner.invoke(app, ["routing", "diff", "2", "2"])
    assert (same.exit_code, same.stdout) == (0, "")
    assert "route the same way" in same.stderr

    assert _ok("activate", "1") == "activated version 1\n"
    assert _listed(_ok("list")) == [("2", "", me), ("1", "*", me)]
    assert _ok("rollback") == "rolled back: version 2 is active\n"
    assert _ok("show") == MR_TO_ORTHANC

    as_json = [json.loads(line) for line in _ok("list", "--json").splitlines()]
    assert [(v["version"], v["is_active"], v["author"], v["comment"]) for v in as_json] == [
        (2, True, me, "MR instead"),
        (1, False, me, "CT to the archive"),
    ]


def test_bad_rules_and_unknown_versions_fail_with_the_reason(data_dir: Path) -> None:
    unknown = runner.invoke(
        app, ["routing", "save", "-"], input="rules:\n  - name: x\n    send_to: [NOWHERE]\n"
    )
    assert unknown.exit_code == 1
    assert "unknown destination(s) NOWHERE" in unknown.output
    typo = runner.invoke(
        app,
        ["routing", "save", "-"],
        input="rules:\n  - name: x\n    when: {Modality: {equal: CT}}\n    send_to: ORTHANC\n",
    )
    assert typo.exit_code == 1
    assert "rule 1 ('x'): Modality: unknown operator 'equal'" in typo.output
    assert "(line 3)" in typo.output
    assert _ok("list") == "no routing rules saved yet\n"
    for args in (["show", "7"], ["activate", "7"], ["diff", "7", "8"]):
        result = runner.invoke(app, ["routing", *args])
        assert result.exit_code == 1, args
        assert "no routing rules version 7" in result.output
    rollback = runner.invoke(app, ["routing", "rollback"])
    assert rollback.exit_code == 1
    assert "no routing rules were ever activated" in rollback.output
    missing = runner.invoke(app, ["routing", "save", str(data_dir / "missing.yaml")])
    assert missing.exit_code == 2
    assert "cannot read" in missing.output
    bad_time = runner.invoke(app, ["routing", "dry-run", "-", "--since", "yesterday"], input="")
    assert bad_time.exit_code == 2
    assert "not an ISO 8601" in bad_time.output


@pytest.mark.dcmtk
@requires_dcmtk
def test_a_dry_run_lists_each_recent_study_with_where_the_candidate_sends_it(
    tmp_path: Path, data_dir: Path, clock: RunningClock
) -> None:
    # Two published studies (a CT and an MR), received by a node that is then stopped.
    node = Pacsflow(make_settings(tmp_path, peers=PEERS), clock)
    node.start()
    try:
        studies = {}
        for modality, sample in (("CT", "CT_small.dcm"), ("MR", "MR_small.dcm")):
            patient, order = scheduled(node)
            path, ds = restamp(
                sample,
                tmp_path / f"{modality}.dcm",
                patient_id=str(patient.primary.value),
                accession=str(order.accession_number),
                name_pn="Dvořák^Antonín",
                issuer="HOSP",
                birth="19700102",
                sex="M",
            )
            assert storescu(node.dicom.port, path).returncode == 0
            studies[modality] = str(ds.StudyInstanceUID)
        assert len(node.queries.studies(StudyFilter())) == 2
    finally:
        node.stop()
    _ok("save", "-", "--activate", stdin=CT_TO_ORTHANC)
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(
        "rules:\n"
        "  - {name: mr, when: {Modality: MR}, send_to: ORTHANC}\n"
        "  - {name: all, send_to: ARCHIVE}\n",
        encoding="utf-8",
    )

    at = CliContext(clock)  # the dry run's default period ends at the node's now
    rows = {
        row["study_instance_uid"]: row
        for row in map(json.loads, _ok("dry-run", str(candidate), "--json", obj=at).splitlines())
    }
    assert rows[studies["CT"]] == {
        "study_instance_uid": studies["CT"],
        "active": ["ORTHANC"],
        "candidate": ["ARCHIVE"],
        "added": ["ARCHIVE"],
        "removed": ["ORTHANC"],
        "changed": True,
    }
    assert rows[studies["MR"]] == {
        "study_instance_uid": studies["MR"],
        "active": [],
        "candidate": ["ARCHIVE", "ORTHANC"],
        "added": ["ARCHIVE", "ORTHANC"],
        "removed": [],
        "changed": True,
    }

    table = _ok("dry-run", str(candidate), obj=at).splitlines()
    assert table[0].split() == ["study", "active", "candidate", "change"]
    by_study = {line.split()[0]: line.split()[1:] for line in table[1:-1]}
    assert by_study[studies["CT"]] == ["ORTHANC", "ARCHIVE", "+ARCHIVE", "-ORTHANC"]
    assert by_study[studies["MR"]] == ["-", "ARCHIVE,", "ORTHANC", "+ARCHIVE", "+ORTHANC"]
    assert table[-1] == "2 study(ies), 2 routed differently by the candidate"

    # The active rules as the candidate: nothing changes, and --changed-only hides it all.
    same = _ok("dry-run", "-", "--json", stdin=CT_TO_ORTHANC, obj=at).splitlines()
    assert [json.loads(line)["changed"] for line in same] == [False, False]
    assert _ok("dry-run", "-", "--changed-only", "--json", stdin=CT_TO_ORTHANC, obj=at) == ""
    assert _ok("dry-run", "-", "--changed-only", stdin=CT_TO_ORTHANC, obj=at).startswith(
        "no changed studies received between"
    )

    # Only studies received in the period count.
    now = clock.now()
    later = now + timedelta(hours=1)
    after = ["--since", later.isoformat(), "--until", (later + timedelta(days=1)).isoformat()]
    assert _ok("dry-run", str(candidate), *after, "--json", obj=at) == ""
    wrong_way = runner.invoke(
        app, ["routing", "dry-run", str(candidate), "--since", after[1]], obj=at
    )
    assert wrong_way.exit_code == 2
    assert "is not before" in wrong_way.output
    # Dates without an offset are the host's local days (the CLI reads them so).
    earlier = (now - timedelta(days=30)).date().isoformat()
    before = (now - timedelta(days=29)).date().isoformat()
    assert _ok("dry-run", str(candidate), "--since", earlier, "--until", before, obj=at) == (
        f"no studies received between {datetime.fromisoformat(earlier).astimezone().isoformat()}"
        f" and {datetime.fromisoformat(before).astimezone().isoformat()}\n"
    )
    # The dry run saved nothing and changed nothing.
    assert _listed(_ok("list")) == [("1", "*", f"{getpass.getuser()}@cli")]
