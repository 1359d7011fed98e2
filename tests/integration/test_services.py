"""The one builder of the workflow services: each service built once, shared, and only on use."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import pacsflow.services as services_module
from pacsflow.cli import CliContext, app
from pacsflow.config import Settings
from pacsflow.services import Services, prepare_database
from pacsflow.workflow.prefetch import PREFETCH_JOB
from pacsflow.workflow.results import DELIVER_RESULT_JOB
from pacsflow.workflow.routing import FORWARD_JOB
from tests.fakes import RunningClock

runner = CliRunner()

#: What the builder makes that other services hang hooks on, and the blob store.
_COUNTED = ("Routing", "Prefetch", "Results", "open_blob_store")


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many times the builder made each counted thing."""
    counts: Counter[str] = Counter()
    for name in _COUNTED:
        real = getattr(services_module, name)

        def counting(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            counts[_name] += 1
            return _real(*args, **kw)

        monkeypatch.setattr(services_module, name, counting)
    return counts


def test_a_node_hangs_every_hook_and_handler_on_one_routing_prefetch_and_results(
    tmp_path: Path, clock: RunningClock, built: Counter[str]
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    prepare_database(settings)
    services = Services(settings, clock)

    hooked = (services.ingest, services.intake, services.steps, services.reconciliation)
    assert services.ingest is services.ingest
    assert None not in hooked
    handlers = services.job_handlers()
    worker = services.worker(handlers)

    assert built == dict.fromkeys(_COUNTED, 1)
    assert getattr(handlers[FORWARD_JOB], "__self__", None) is services.routing
    assert getattr(handlers[PREFETCH_JOB], "__self__", None) is services.prefetch
    assert getattr(handlers[DELIVER_RESULT_JOB], "__self__", None) is services.results
    assert services.clock is clock
    assert worker.policy.max_attempts == settings.job_max_attempts
    services.engine.dispose()


def test_a_command_builds_only_the_services_it_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: RunningClock, built: Counter[str]
) -> None:
    monkeypatch.setenv("PACSFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PACSFLOW_FAST_HASHING_FOR_TESTS", "1")

    result = runner.invoke(
        app, ["users", "create", "alice", "--role", "admin"], obj=CliContext(clock)
    )

    assert result.exit_code == 0, result.output
    assert "created alice" in result.output
    assert built == Counter()
    assert not (tmp_path / "data" / "objects").exists()
