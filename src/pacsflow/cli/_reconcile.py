"""What the reconciliation commands (`exceptions`, `studies`) share: identifier options, output."""

from __future__ import annotations

from typing import Annotated

import typer

from pacsflow.workflow.reconciliation import Done

PatientIdOption = Annotated[
    str | None, typer.Option("--patient-id", help="The patient ID to set.", show_default=False)
]
IssuerOption = Annotated[
    str | None,
    typer.Option(help="The issuer of the patient ID to set ('' clears it).", show_default=False),
]
AccessionOption = Annotated[
    str | None,
    typer.Option(
        "--accession", help="The accession number to set ('' clears it).", show_default=False
    ),
]


def print_done(what: str, done: Done) -> None:
    """Print what an action did, the study's state and how to undo it."""
    typer.echo(
        f"{what}: the study is {done.state.value} "
        f"(action {done.action_id}; `pacsflow exceptions undo {done.action_id}` reverts it)"
    )


__all__ = ["AccessionOption", "IssuerOption", "PatientIdOption", "print_done"]
