"""`pacsflow db`: the database schema."""

from __future__ import annotations

import typer

from pacsflow.cli._common import ConfigOption, settings

app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Create or migrate the database schema to the newest version."""
    from pacsflow.services import prepare_database

    url = prepare_database(settings(config))
    typer.echo(f"database is up to date: {url}")


__all__ = ["app"]
