"""The `pacsflow` command: help, version, database upgrade, settings errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from typer.testing import CliRunner

from pacsflow import __version__
from pacsflow.adapters.db.migrate import alembic_config
from pacsflow.cli import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"pacsflow {__version__}"


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"], ["db", "upgrade", "--help"]])
def test_every_command_explains_itself(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_db_upgrade_creates_the_schema_in_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACSFLOW_DATA_DIR", str(tmp_path / "data"))
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(tmp_path / "data" / "pacsflow.db") as db:
        tables = {r[0] for r in db.execute("select name from sqlite_master where type='table'")}
        version = db.execute("select version_num from alembic_version").fetchone()[0]
    assert {"patients", "orders", "studies", "instances", "exceptions", "hl7_messages"} <= tables
    assert version == ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    again = runner.invoke(app, ["db", "upgrade"])  # idempotent
    assert again.exit_code == 0


def test_config_file_is_read_and_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "p.toml"
    config.write_text(f'data_dir = "{tmp_path / "from-file"}"\n', encoding="utf-8")
    result = runner.invoke(app, ["db", "upgrade", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "from-file" / "pacsflow.db").is_file()
    monkeypatch.setenv("PACSFLOW_DATA_DIR", str(tmp_path / "from-env"))
    result = runner.invoke(app, ["db", "upgrade", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "from-env" / "pacsflow.db").is_file()


def test_invalid_settings_say_what_is_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACSFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PACSFLOW_DICOM_PORT", "not-a-port")
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 2
    assert "dicom_port" in result.output


def test_unknown_setting_in_the_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "p.toml"
    config.write_text("dicom_prot = 104\n", encoding="utf-8")
    result = runner.invoke(app, ["db", "upgrade", "--config", str(config)])
    assert result.exit_code == 2
    assert "dicom_prot" in result.output
