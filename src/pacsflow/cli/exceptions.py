"""`pacsflow exceptions`: work the exceptions queue (held studies)."""

from __future__ import annotations

import enum
import json
from datetime import date, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer

from pacsflow.cli._common import ConfigOption, cli_actor, fail, services
from pacsflow.cli._reconcile import AccessionOption, IssuerOption, PatientIdOption, print_done
from pacsflow.domain.errors import PacsflowError
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier
from pacsflow.workflow.reconciliation import Correction

app = typer.Typer(
    help=(
        "Work the exceptions queue (held studies, see docs/matching.md): list it overdue "
        "first, see candidate orders and patients, match, assign, correct identifiers, reject, "
        "name an owner, undo, and print the daily report. Actions are audited as you "
        "(<user>@cli)."
    ),
    no_args_is_help=True,
)


def _duration(value: timedelta) -> str:
    """A duration as people read it on a queue: 3d4h, 2h05m, 7m."""
    minutes = int(value.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days}d{hours}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


ExceptionArgument = Annotated[
    int, typer.Argument(min=1, metavar="ID", help="The exception id (see `exceptions list`).")
]


@app.command("list")
def exceptions_list(
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    config: ConfigOption = None,
) -> None:
    """List open exceptions, overdue first (marked !), then oldest first.

    Shows the reason, the mismatch source, the age against the reason's target,
    the owner, and the identifiers the images arrived with.
    """
    items = services(config).exception_queue.open(limit)
    if as_json:
        for item in items:
            e = item.exception
            typer.echo(
                json.dumps(
                    {
                        "id": e.id,
                        "study_instance_uid": e.study_instance_uid,
                        "reason": e.reason.value,
                        "source": e.source.value,
                        "detail": e.detail,
                        "opened_at": e.opened_at.isoformat(),
                        "age_seconds": int(item.age.total_seconds()),
                        "target_minutes": int(item.target.total_seconds() // 60),
                        "overdue": item.is_overdue,
                        "owner": e.owner,
                        "received_patient_id": e.received.patient.value,
                        "received_issuer": e.received.patient.issuer,
                        "received_accession_number": e.received.accession_number,
                    }
                )
            )
        return
    if not items:
        typer.echo("no open exceptions")
        return
    typer.echo(
        f"{'id':>6}  {'reason':22} {'source':21} {'age':>7} {'target':>7}  {'owner':12} "
        "patient ID / accession"
    )
    for item in items:
        e = item.exception
        mark = "!" if item.is_overdue else " "
        typer.echo(
            f"{e.id:>6}{mark} {e.reason.value:22} {e.source.value:21} {_duration(item.age):>7} "
            f"{_duration(item.target):>7}  {e.owner or '-':12} "
            f"{e.received.patient.value} / {e.received.accession_number or '-'}"
        )
    overdue = sum(i.is_overdue for i in items)
    typer.echo(f"{len(items)} open, {overdue} overdue")


@app.command("candidates")
def exceptions_candidates(
    exception_id: ExceptionArgument,
    limit: Annotated[int, typer.Option(min=1, max=50, help="At most this many.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    config: ConfigOption = None,
) -> None:
    """Show the orders and patients the held study most likely belongs to, best first.

    Each has a score (0-100) and its reasons: the same or nearly the same
    patient ID, name, birth date or accession number (typos, transposed
    characters, swapped names), scheduled near the study date, same modality.
    """
    try:
        found = services(config).exception_queue.candidates(exception_id, limit)
    except PacsflowError as exc:
        fail(exc)
    if as_json:
        for c in found:
            typer.echo(
                json.dumps(
                    {
                        "kind": c.kind.value,
                        "score": c.score,
                        "accession_number": c.order.accession_number if c.order else None,
                        "patient_id": c.patient.primary.value if c.patient else None,
                        "issuer": c.patient.primary.issuer if c.patient else None,
                        "reasons": [
                            {"code": e.code, "points": e.points, "detail": e.detail}
                            for e in c.evidence
                        ],
                    }
                )
            )
        return
    if not found:
        typer.echo("no candidates")
        return
    for c in found:
        if c.order is not None:
            what = f"order {c.order.accession_number}"
            hint = f"pacsflow exceptions match {exception_id} {c.order.accession_number}"
        else:
            what, hint = "patient", ""
        if c.patient is not None:
            p = c.patient.primary
            what += f" of {p.value}" + (f" ({p.issuer})" if p.issuer else "")
            what += f" {c.patient.demographics.name.display()}"
            if not hint:
                issuer = f" --issuer {p.issuer}" if p.issuer else ""
                hint = f"pacsflow exceptions assign {exception_id} {p.value}{issuer}"
        typer.echo(f"{c.score:>3}  {c.kind.value:7} {what}")
        for e in c.evidence:
            typer.echo(f"       {e.points:+d} {e.detail}")
        typer.echo(f"       → {hint}")


@app.command("match")
def exceptions_match(
    exception_id: ExceptionArgument,
    accession: Annotated[
        str, typer.Argument(metavar="ACCESSION", help="The accession number of the order.")
    ],
    config: ConfigOption = None,
) -> None:
    """Match a held study to an order: it takes the order's patient and is published."""
    try:
        done = services(config).reconciliation.match_to_order(exception_id, accession, cli_actor())
    except PacsflowError as exc:
        fail(exc)
    print_done(f"matched exception {exception_id} to order {accession}", done)


@app.command("assign")
def exceptions_assign(
    exception_id: ExceptionArgument,
    patient_id: Annotated[
        str, typer.Argument(metavar="PATIENT_ID", help="An identifier of a registered patient.")
    ],
    issuer: Annotated[
        str, typer.Option(help="The identifier's issuer (assigning authority), when several.")
    ] = "",
    config: ConfigOption = None,
) -> None:
    """Assign a held (unscheduled) study to a registered patient: it is published."""
    patient = PatientIdentifier(PatientId(patient_id), Issuer(issuer))
    try:
        done = services(config).reconciliation.assign_to_patient(exception_id, patient, cli_actor())
    except PacsflowError as exc:
        fail(exc)
    print_done(f"assigned exception {exception_id} to patient {patient_id}", done)


@app.command("reject")
def exceptions_reject(
    exception_id: ExceptionArgument,
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why (kept with the study and audited).")
    ],
    config: ConfigOption = None,
) -> None:
    """Reject a held study: hidden from clinical use for good, kept, with the reason."""
    try:
        done = services(config).reconciliation.reject(exception_id, reason, cli_actor())
    except PacsflowError as exc:
        fail(exc)
    print_done(f"rejected exception {exception_id}", done)


@app.command("correct")
def exceptions_correct(
    exception_id: ExceptionArgument,
    patient_id: PatientIdOption = None,
    issuer: IssuerOption = None,
    accession: AccessionOption = None,
    config: ConfigOption = None,
) -> None:
    """Correct a held study's identifiers and match it again.

    Published when it now matches an order and patient, else held for the
    reason matching gives now. Identifiers not given keep their value.
    """
    correction = Correction(patient_id, issuer, accession)
    try:
        done = services(config).reconciliation.correct(exception_id, correction, cli_actor())
    except PacsflowError as exc:
        fail(exc)
    print_done(f"corrected exception {exception_id} ({correction.describe()})", done)


@app.command("undo")
def exceptions_undo(
    action_id: Annotated[
        int,
        typer.Argument(min=1, metavar="ACTION_ID", help="The action id an action printed."),
    ],
    config: ConfigOption = None,
) -> None:
    """Undo a reconciliation action: the study and its exception are exactly as before."""
    try:
        state = services(config).reconciliation.undo(action_id, cli_actor())
    except PacsflowError as exc:
        fail(exc)
    typer.echo(f"undid action {action_id}: the study is {state.value}")


@app.command("owner")
def exceptions_owner(
    exception_id: ExceptionArgument,
    user: Annotated[
        str, typer.Argument(metavar="USER", help="The username of who works the exception.")
    ],
    config: ConfigOption = None,
) -> None:
    """Name the user who works an exception (undo restores the previous owner)."""
    try:
        done = services(config).reconciliation.assign_owner(exception_id, user, cli_actor())
    except PacsflowError as exc:
        fail(exc)
    typer.echo(
        f"exception {exception_id} is owned by {user.strip()} "
        f"(action {done.action_id}; `pacsflow exceptions undo {done.action_id}` reverts it)"
    )


class ReportFormat(enum.StrEnum):
    """How the daily report is printed."""

    CSV = "csv"
    JSON = "json"


@app.command("report")
def exceptions_report(
    day: Annotated[
        str | None,
        typer.Option(metavar="YYYY-MM-DD", help="The day to report. Default: today."),
    ] = None,
    fmt: Annotated[ReportFormat, typer.Option("--format", "-f", help="csv or json.")] = (
        ReportFormat.CSV
    ),
    tz: Annotated[
        str | None,
        typer.Option(
            help="The time zone the day is in (IANA name, e.g. Europe/Paris). "
            "Default: the site's (site_timezone)."
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Print the daily reconciliation report.

    Per reason and mismatch source, then for all (`all,all`): exceptions
    opened and resolved that day; actions (matched, assigned, rejected,
    undone, late-matched, other); median and 90th percentile time to
    resolution in seconds; open and past their target at the end of the day
    (for today: now).
    """
    try:
        when = date.fromisoformat(day) if day is not None else None
    except ValueError as exc:
        raise typer.BadParameter(f"{day!r} is not a date (YYYY-MM-DD)", param_hint="--day") from exc
    try:
        zone = ZoneInfo(tz) if tz is not None else None
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise typer.BadParameter(f"unknown time zone {tz!r}", param_hint="--tz") from exc
    try:
        report = services(config).exception_queue.report(when, zone)
    except PacsflowError as exc:
        fail(exc)
    if fmt is ReportFormat.JSON:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        typer.echo(report.as_csv(), nl=False)


__all__ = ["app"]
