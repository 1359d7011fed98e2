"""What every command group shares: the --config option, settings, clock, services, errors."""

from __future__ import annotations

import getpass
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from pydantic import ValidationError

from pacsflow.config import Settings, load_settings
from pacsflow.domain.audit import ActiveParticipant
from pacsflow.domain.errors import PacsflowError
from pacsflow.workflow.ports.clock import Clock

if TYPE_CHECKING:
    from pacsflow.services import Services

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML settings file. PACSFLOW_* environment variables override its values.",
        exists=True,
        dir_okay=False,
        envvar="PACSFLOW_CONFIG",
    ),
]


@dataclass(frozen=True, slots=True)
class CliContext:
    """What a caller may hand the commands as click's context object: the clock (tests)."""

    clock: Clock


#: The clock of the running command when its caller gave one (set by the main callback).
given_clock: ContextVar[Clock | None] = ContextVar("pacsflow_cli_clock", default=None)


def clock(found: Settings) -> Clock:
    """The time the commands work at: the wall clock in the site time zone unless the caller
    gave another."""
    from pacsflow.services import SystemClock

    return given_clock.get() or SystemClock(found.site_zone)


def settings(config: Path | None) -> Settings:
    """The settings from the file and the environment; exit 2 when they are invalid."""
    try:
        return load_settings(config)
    except ValidationError as exc:
        typer.secho(f"invalid settings:\n{exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc


def services(config: Path | None) -> Services:
    """The workflow services over the configured database, its schema brought up to date."""
    from pacsflow.services import Services, prepare_database

    found = settings(config)
    prepare_database(found)
    return Services(found, clock(found))


def fail(exc: PacsflowError) -> NoReturn:
    """Print what went wrong and exit 1."""
    typer.secho(str(exc), fg=typer.colors.RED, err=True)
    raise typer.Exit(1) from exc


def cli_actor() -> ActiveParticipant:
    """Who acts from this command line (the audit trail names them)."""
    return ActiveParticipant(f"{getpass.getuser()}@cli", is_requestor=True)


__all__ = [
    "CliContext",
    "ConfigOption",
    "cli_actor",
    "clock",
    "fail",
    "given_clock",
    "services",
    "settings",
]
