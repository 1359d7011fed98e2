"""`pacsflow studies`: reconcile a study, held or published (correct, split)."""

from __future__ import annotations

from typing import Annotated

import typer

from pacsflow.cli._common import ConfigOption, cli_actor, fail, services
from pacsflow.cli._reconcile import AccessionOption, IssuerOption, PatientIdOption, print_done
from pacsflow.domain.errors import PacsflowError
from pacsflow.workflow.reconciliation import Correction

app = typer.Typer(
    help=(
        "Reconcile a study, held or published (see docs/matching.md): correct its identifiers, "
        "split a series off to another study. Undo with `pacsflow exceptions undo`. Actions "
        "are audited as you (<user>@cli)."
    ),
    no_args_is_help=True,
)

StudyArgument = Annotated[str, typer.Argument(metavar="STUDY_UID", help="The Study Instance UID.")]


@app.command("correct")
def studies_correct(
    study_uid: StudyArgument,
    patient_id: PatientIdOption = None,
    issuer: IssuerOption = None,
    accession: AccessionOption = None,
    config: ConfigOption = None,
) -> None:
    """Correct a study's identifiers (held or published) and match it again.

    A published study that no longer matches is held, with a new exception.
    """
    correction = Correction(patient_id, issuer, accession)
    try:
        done = services(config).reconciliation.correct_study(study_uid, correction, cli_actor())
    except PacsflowError as exc:
        fail(exc)
    print_done(f"corrected study {study_uid} ({correction.describe()})", done)


@app.command("split")
def studies_split(
    study_uid: StudyArgument,
    series_uid: Annotated[
        str, typer.Argument(metavar="SERIES_UID", help="The Series Instance UID to move.")
    ],
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="STUDY_UID",
            help="An existing study to move the series to (default: a new study).",
            show_default=False,
        ),
    ] = None,
    patient_id: PatientIdOption = None,
    issuer: IssuerOption = None,
    accession: AccessionOption = None,
    config: ConfigOption = None,
) -> None:
    """Move one series out of a study, to an existing study or a new one.

    A new study takes the source's identity with the identifiers given and is
    matched like a new arrival. The files stay as received: retrievals carry
    the new Study Instance UID from the index.
    """
    try:
        done = services(config).reconciliation.split(
            study_uid,
            series_uid,
            cli_actor(),
            target_study_uid=to,
            correction=Correction(patient_id, issuer, accession),
        )
    except PacsflowError as exc:
        fail(exc)
    typer.echo(
        f"moved series {series_uid} to study {done.target_study_uid} "
        f"({done.target_state.value}); study {study_uid} is {done.state.value} "
        f"(action {done.action_id}; `pacsflow exceptions undo {done.action_id}` reverts it)"
    )


__all__ = ["app"]
