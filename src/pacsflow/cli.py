"""The `pacsflow` command: serve, manage the database, print the version."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from pydantic import ValidationError

from pacsflow import __version__
from pacsflow.config import Settings, load_settings

app = typer.Typer(
    help=(
        "pacsflow: the PACS workflow manager between RIS/EHR, modalities and archives.\n\n"
        "It takes HL7 v2 orders and ADT over MLLP, serves a DICOM modality worklist, "
        "receives images (C-STORE), matches them to orders and patients, holds what does "
        "not match in an exceptions queue, and answers queries (C-FIND/C-MOVE/C-GET, HTTP)."
    ),
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")

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


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pacsflow {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """pacsflow command-line interface."""


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ValidationError as exc:
        typer.secho(f"invalid settings:\n{exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc


@app.command()
def serve(config: ConfigOption = None) -> None:
    """Run the DICOM, HL7 MLLP and HTTP listeners until interrupted (Ctrl-C or SIGTERM).

    Upgrades an empty or older database first. Defaults: DICOM AE PACSFLOW on port
    11112, HL7 MLLP on 2575, HTTP on 8080, all on 127.0.0.1; data in ./pacsflow-data.
    """
    from pacsflow.app import Pacsflow

    settings = _settings(config)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    node = Pacsflow(settings)
    try:
        node.start()
    except OSError as exc:
        node.stop()
        typer.secho(
            f"cannot start: {exc}. Is another pacsflow (or another service) using the port? "
            "Change it with PACSFLOW_DICOM_PORT / PACSFLOW_HL7_PORT / PACSFLOW_HTTP_PORT.",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1) from exc

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("pacsflow").info("signal %d: stopping", signum)
        node.stop()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    typer.echo(
        f"pacsflow is running: DICOM {settings.ae_title}@{settings.host}:{node.dicom.port}, "
        f"HL7 MLLP {settings.host}:{node.hl7.port}, HTTP http://{settings.host}:{node.http.port}"
        " (Ctrl-C stops)",
        err=True,
    )
    node.wait()


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Create or migrate the database schema to the newest version."""
    from pacsflow.app import prepare_database

    settings = _settings(config)
    url = prepare_database(settings)
    typer.echo(f"database is up to date: {url}")


def main() -> None:
    """Entry point of the `pacsflow` script."""
    sys.exit(app())


__all__ = ["app", "main"]
