"""`pacsflow users`: user and system accounts."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pacsflow.cli._common import ConfigOption, fail, services
from pacsflow.domain.access import Role
from pacsflow.domain.errors import PacsflowError

app = typer.Typer(help="Manage users and system accounts.", no_args_is_help=True)


@app.command("create")
def users_create(
    username: Annotated[str, typer.Argument(help="Login name, e.g. alice or ris-interface.")],
    role: Annotated[
        list[Role],
        typer.Option("--role", "-r", help="A role; repeat for several (least privilege!)."),
    ],
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read a password (for the web UI) from stdin."),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Create a user or system account with one or more roles (see docs/security.md)."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else ""
    try:
        user = services(config).accounts.create_user(username, role, password)
    except PacsflowError as exc:
        fail(exc)
    typer.echo(f"created {user.username} with roles {', '.join(sorted(user.roles))}")


__all__ = ["app"]
