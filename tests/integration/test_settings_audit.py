"""A change of the settings file is a configuration change: recorded, secrets masked."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pacsflow.app import Pacsflow, redacted_settings
from pacsflow.domain.audit import ActiveParticipant, EventTypes
from pacsflow.workflow.audit import AuditQuery
from pacsflow.workflow.settings_audit import changed_keys
from tests.conftest import make_settings

AUDITOR = ActiveParticipant("audrey", is_requestor=True)


def _config_events(node: Pacsflow) -> list[str]:
    found = []
    records = node.audit.search(AuditQuery(limit=1000), AUDITOR)
    for record in sorted(records, key=lambda r: r.id):  # oldest first
        event = record.event()
        if event.event_type == EventTypes.SOFTWARE_CONFIGURATION:
            found.append(event.outcome_description)
    return found


def test_each_start_with_changed_settings_is_audited_with_the_changed_keys(
    tmp_path: Path,
) -> None:
    first = Pacsflow(make_settings(tmp_path, site="north"))
    first.start()
    first.stop()
    same = Pacsflow(make_settings(tmp_path, site="north"))
    same.start()
    same.stop()
    changed = Pacsflow(make_settings(tmp_path, site="south", job_workers=3))
    changed.start()
    try:
        events = _config_events(changed)
    finally:
        changed.stop()
    assert len(events) == 2  # the first start and the change; the identical start adds none
    assert events[0].startswith("first start: ")
    assert events[1] == "changed: job_workers, site"


def test_the_first_start_logs_first_start_not_every_setting_as_changed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def start_and_stop(site: str) -> list[str]:
        caplog.clear()
        node = Pacsflow(make_settings(tmp_path, site=site))
        with caplog.at_level(logging.INFO, logger="pacsflow.app"):
            node.start()
        node.stop()
        return [r.getMessage() for r in caplog.records if r.name == "pacsflow.app"]

    first = start_and_stop(site="north")
    assert "first start: settings recorded" in first
    assert not [m for m in first if m.startswith("settings changed")]
    assert not [m for m in start_and_stop(site="north") if "settings" in m]
    assert "settings changed since the last start: site" in start_and_stop(site="south")


def test_passwords_and_tokens_never_reach_the_log(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        database_url=f"sqlite:///{tmp_path / 'x.db'}",
        dicomweb_destinations=[
            {"name": "W", "url": "https://u:pw@web/dicom-web", "password": "s3cret"},
            {"name": "T", "url": "https://web/dicom-web", "bearer_token": "tok"},
        ],
    )
    text = str(redacted_settings(settings))
    assert "s3cret" not in text
    assert "tok'" not in text
    assert ":pw@" not in text
    assert "https://u:***@web/dicom-web" in text


def test_changed_keys_include_added_and_removed_ones() -> None:
    assert changed_keys({"a": 1, "b": 2}, {"b": 3, "c": 4}) == ["a", "b", "c"]
    assert changed_keys({"a": [1]}, {"a": [1]}) == []
