"""`pacsflow audit`: the audit trail's integrity."""

from __future__ import annotations

import typer

from pacsflow.cli._common import ConfigOption, clock, settings

app = typer.Typer(help="Check the audit trail.", no_args_is_help=True)


@app.command("verify")
def audit_verify(config: ConfigOption = None) -> None:
    """Check the audit trail's hash chain; exit 1 if a record was altered, removed or reordered."""
    from pacsflow.adapters.db.audit import run_verify
    from pacsflow.services import Services

    code, message = run_verify(Services(found := settings(config), clock(found)).uow)
    typer.echo(message, err=code != 0)
    raise typer.Exit(code)


__all__ = ["app"]
