"""The `pacsflow` command: serve, manage the database, print the version.

One module per command group; each parses its arguments, takes its services from
`pacsflow.services` and calls a use case.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pacsflow import __version__
from pacsflow.cli import audit, db, exceptions, jobs, routing, serve, studies, tokens, users
from pacsflow.cli._common import CliContext, given_clock

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
app.add_typer(db.app, name="db")
app.add_typer(users.app, name="users")
app.add_typer(tokens.app, name="tokens")
app.add_typer(audit.app, name="audit")
app.add_typer(jobs.app, name="jobs")
app.add_typer(routing.app, name="routing")
app.add_typer(exceptions.app, name="exceptions")
app.add_typer(studies.app, name="studies")
app.command()(serve.serve)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pacsflow {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """pacsflow command-line interface."""
    given_clock.set(ctx.obj.clock if isinstance(ctx.obj, CliContext) else None)


def main() -> None:
    """Entry point of the `pacsflow` script."""
    sys.exit(app())


__all__ = ["CliContext", "app", "main"]
