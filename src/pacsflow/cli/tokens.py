"""`pacsflow tokens`: API tokens."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from pacsflow.cli._common import ConfigOption, fail, services
from pacsflow.domain.errors import PacsflowError

app = typer.Typer(help="Manage API tokens (HTTP Bearer credentials).", no_args_is_help=True)


@app.command("create")
def tokens_create(
    username: Annotated[str, typer.Argument(help="The user the token acts for.")],
    name: Annotated[str, typer.Option(help="What the token is for, e.g. 'EHR viewer'.")] = "",
    days: Annotated[
        int, typer.Option(help="Days until the token expires; 0 never expires.", min=0)
    ] = 365,
    config: ConfigOption = None,
) -> None:
    """Create an API token and print it once; send it as `Authorization: Bearer <token>`."""
    try:
        token = services(config).accounts.create_token(
            username, name, timedelta(days=days) if days else None
        )
    except PacsflowError as exc:
        fail(exc)
    typer.echo(token)


@app.command("revoke")
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(help="The id: the 12 characters after 'pf_'.")],
    config: ConfigOption = None,
) -> None:
    """Revoke a token; every node refuses it within a minute."""
    try:
        services(config).accounts.revoke_token(token_id)
    except PacsflowError as exc:
        fail(exc)
    typer.echo(f"revoked {token_id}")


__all__ = ["app"]
