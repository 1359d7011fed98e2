"""The `pacsflow` command: serve, manage the database, print the version."""

from __future__ import annotations

import enum
import getpass
import json
import logging
import signal
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Annotated, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from pydantic import ValidationError

from pacsflow import __version__
from pacsflow.config import Settings, load_settings
from pacsflow.domain.access import Role
from pacsflow.domain.audit import ActiveParticipant
from pacsflow.domain.errors import PacsflowError
from pacsflow.domain.jobs import JobState
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier
from pacsflow.workflow.accounts import Accounts
from pacsflow.workflow.exception_queue import ExceptionQueue
from pacsflow.workflow.jobs import Jobs
from pacsflow.workflow.ports.clock import Clock
from pacsflow.workflow.reconciliation import Correction, Done, Reconciliation
from pacsflow.workflow.routing import Routing

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
users_app = typer.Typer(help="Manage users and system accounts.", no_args_is_help=True)
app.add_typer(users_app, name="users")
tokens_app = typer.Typer(help="Manage API tokens (HTTP Bearer credentials).", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")
audit_app = typer.Typer(help="Check the audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
jobs_app = typer.Typer(
    help=(
        "Look after the durable job queue (forwarding, prefetch, result delivery, storage "
        "commitment reports): list jobs, see dead letters, replay them."
    ),
    no_args_is_help=True,
)
app.add_typer(jobs_app, name="jobs")
routing_app = typer.Typer(
    help=(
        "Manage the routing rules (see docs/routing.md): save a rule file as a new version, "
        "list, show and compare versions, activate one or roll back, and dry-run a candidate "
        "over the studies received recently. A running node routes by the active version."
    ),
    no_args_is_help=True,
)
app.add_typer(routing_app, name="routing")
exceptions_app = typer.Typer(
    help=(
        "Work the exceptions queue (held studies, see docs/matching.md): list it overdue "
        "first, see candidate orders and patients, match, assign, correct identifiers, reject, "
        "name an owner, undo, and print the daily report. Actions are audited as you "
        "(<user>@cli)."
    ),
    no_args_is_help=True,
)
app.add_typer(exceptions_app, name="exceptions")
studies_app = typer.Typer(
    help=(
        "Reconcile a study, held or published (see docs/matching.md): correct its identifiers, "
        "split a series off to another study. Undo with `pacsflow exceptions undo`. Actions "
        "are audited as you (<user>@cli)."
    ),
    no_args_is_help=True,
)
app.add_typer(studies_app, name="studies")

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
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """pacsflow command-line interface."""
    _given_clock.set(ctx.obj.clock if isinstance(ctx.obj, CliContext) else None)


@dataclass(frozen=True, slots=True)
class CliContext:
    """What a caller may hand the commands as click's context object: the clock (tests)."""

    clock: Clock


#: The clock of the running command when its caller gave one (set by main_options).
_given_clock: ContextVar[Clock | None] = ContextVar("pacsflow_cli_clock", default=None)


def _clock() -> Clock:
    """The time the commands work at: the wall clock unless the caller gave another."""
    from pacsflow.app import SystemClock

    return _given_clock.get() or SystemClock()


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


def _accounts(config: Path | None) -> Accounts:
    from pacsflow.app import accounts, prepare_database

    settings = _settings(config)
    prepare_database(settings)
    return accounts(settings, clock=_clock())


def _fail(exc: PacsflowError) -> NoReturn:
    typer.secho(str(exc), fg=typer.colors.RED, err=True)
    raise typer.Exit(1) from exc


@users_app.command("create")
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
        user = _accounts(config).create_user(username, role, password)
    except PacsflowError as exc:
        _fail(exc)
    typer.echo(f"created {user.username} with roles {', '.join(sorted(user.roles))}")


@tokens_app.command("create")
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
        token = _accounts(config).create_token(
            username, name, timedelta(days=days) if days else None
        )
    except PacsflowError as exc:
        _fail(exc)
    typer.echo(token)


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(help="The id: the 12 characters after 'pf_'.")],
    config: ConfigOption = None,
) -> None:
    """Revoke a token; every node refuses it within a minute."""
    try:
        _accounts(config).revoke_token(token_id)
    except PacsflowError as exc:
        _fail(exc)
    typer.echo(f"revoked {token_id}")


@audit_app.command("verify")
def audit_verify(config: ConfigOption = None) -> None:
    """Check the audit trail's hash chain; exit 1 if a record was altered, removed or reordered."""
    from pacsflow.adapters.db import SqlUnitOfWorkFactory, make_engine
    from pacsflow.adapters.db.audit import run_verify

    engine = make_engine(_settings(config).effective_database_url)
    code, message = run_verify(SqlUnitOfWorkFactory(engine))
    typer.echo(message, err=code != 0)
    raise typer.Exit(code)


def _jobs(config: Path | None) -> Jobs:
    from pacsflow.app import jobs, prepare_database

    settings = _settings(config)
    prepare_database(settings)
    return jobs(settings, clock=_clock())


@jobs_app.command("list")
def jobs_list(
    state: Annotated[
        JobState | None, typer.Option(help="Only jobs in this state (dead = dead letters).")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Only jobs of this kind.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    config: ConfigOption = None,
) -> None:
    """List jobs, newest first, with attempts and last error."""
    found = _jobs(config).list(state=state, kind=kind, limit=limit)
    if as_json:
        for job in found:
            typer.echo(
                json.dumps(
                    {
                        "id": job.id,
                        "kind": job.kind,
                        "state": job.state.value,
                        "attempts": job.attempts,
                        "destination": job.destination,
                        "created_at": job.created_at.isoformat(),
                        "run_at": job.run_at.isoformat(),
                        "last_error": job.last_error,
                        "payload": dict(job.payload),
                    }
                )
            )
        return
    if not found:
        typer.echo("no jobs")
        return
    typer.echo(f"{'id':>8}  {'state':8} {'kind':22} {'tries':>5}  {'destination':16} last error")
    for job in found:
        typer.echo(
            f"{job.id:>8}  {job.state.value:8} {job.kind:22} {job.attempts:>5}  "
            f"{job.destination:16} {job.last_error[:80]}"
        )


@jobs_app.command("stats")
def jobs_stats(config: ConfigOption = None) -> None:
    """Queue depth by state and kind, the oldest pending job's age, failing destinations."""
    stats = _jobs(config).stats()
    age = stats.oldest_pending_age
    typer.echo(f"depth (pending + running): {stats.depth}")
    typer.echo(f"oldest pending: {age.total_seconds():.0f} s" if age else "oldest pending: none")
    for kind, states in sorted(stats.by_kind.items()):
        typer.echo(f"  {kind}: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    for destination, count in sorted(stats.failing_destinations.items()):
        typer.echo(f"  failing toward {destination or '(none)'}: {count}")


@jobs_app.command("replay")
def jobs_replay(
    job_ids: Annotated[
        list[int] | None, typer.Argument(help="Dead-lettered job ids to run again.")
    ] = None,
    all_dead: Annotated[
        bool, typer.Option("--all-dead", help="Replay every dead-lettered job.")
    ] = False,
    kind: Annotated[str | None, typer.Option(help="With --all-dead: only this kind.")] = None,
    config: ConfigOption = None,
) -> None:
    """Run dead-lettered jobs again with fresh attempts (a running node picks them up)."""
    service = _jobs(config)
    if all_dead:
        typer.echo(f"replayed {service.replay_dead(kind)} dead-lettered job(s)")
        return
    if not job_ids:
        typer.secho("name job ids, or use --all-dead", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    for job_id in job_ids:
        try:
            service.replay(job_id)
        except PacsflowError as exc:
            _fail(exc)
        typer.echo(f"replayed job {job_id}")


def _routing(config: Path | None) -> Routing:
    from pacsflow.app import prepare_database, routing

    settings = _settings(config)
    prepare_database(settings)
    return routing(settings, clock=_clock())


def _cli_actor() -> ActiveParticipant:
    """Who changes the rules from this command line (the audit trail names them)."""
    return ActiveParticipant(f"{getpass.getuser()}@cli", is_requestor=True)


def _rules_text(file: str) -> str:
    """The text of a rule file; `-` reads standard input."""
    if file == "-":
        return sys.stdin.read()
    try:
        return Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {file}: {exc}", param_hint="FILE") from exc


def _when(text: str, option: str) -> datetime:
    """An ISO 8601 date or date-time; one without a UTC offset is local time."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r} is not an ISO 8601 date or date-time (e.g. 2024-05-01T08:00)",
            param_hint=option,
        ) from exc
    return value if value.tzinfo is not None else value.astimezone()


RulesFileArgument = Annotated[
    str,
    typer.Argument(
        metavar="FILE", help="The rules as YAML (or JSON) text; '-' reads standard input."
    ),
]
VersionArgument = Annotated[
    int, typer.Argument(min=1, metavar="N", help="A version number (see `list`).")
]


@routing_app.command("list")
def routing_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    config: ConfigOption = None,
) -> None:
    """List the saved versions, newest first: number, active mark (*), author, time, comment."""
    views = _routing(config).versions()
    if as_json:
        for view in views:
            v = view.version
            typer.echo(
                json.dumps(
                    {
                        "version": v.version,
                        "is_active": view.is_active,
                        "author": v.author,
                        "created_at": v.created_at.isoformat(),
                        "comment": v.comment,
                    }
                )
            )
        return
    if not views:
        typer.echo("no routing rules saved yet")
        return
    typer.echo(f"{'version':>7}  {'active':6}  {'author':20} {'saved at':25} comment")
    for view in views:
        v = view.version
        saved = v.created_at.astimezone().isoformat(sep=" ", timespec="seconds")
        typer.echo(
            f"{v.version:>7}  {'*' if view.is_active else '':6}  {v.author:20} {saved:25} "
            f"{v.comment}"
        )


@routing_app.command("show")
def routing_show(
    version: Annotated[
        int | None,
        typer.Argument(min=1, help="The version number; default: the active version."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Print the rules of a version as they were saved (pipe it to a file to edit and save)."""
    service = _routing(config)
    try:
        found = service.version(version) if version is not None else service.active()
    except PacsflowError as exc:
        _fail(exc)
    if found is None:
        typer.secho("no routing rules are active yet", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo(found.text, nl=not found.text.endswith("\n"))


@routing_app.command("save")
def routing_save(
    file: RulesFileArgument,
    comment: Annotated[
        str, typer.Option("--comment", "-m", help="Why the rules change (kept with the version).")
    ] = "",
    activate: Annotated[
        bool, typer.Option("--activate", help="Also make the new version the active one.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Check a rule file and save it as a new version (not active unless --activate).

    A rule file that cannot be applied is refused with the rule, the problem
    and the line.
    """
    text = _rules_text(file)
    try:
        number = _routing(config).save(text, _cli_actor(), comment, activate=activate)
    except PacsflowError as exc:
        _fail(exc)
    typer.echo(f"saved version {number}" + (" and activated it" if activate else ""))


@routing_app.command("activate")
def routing_activate(version: VersionArgument, config: ConfigOption = None) -> None:
    """Route the instances that arrive from now on by this version."""
    try:
        _routing(config).activate(version, _cli_actor())
    except PacsflowError as exc:
        _fail(exc)
    typer.echo(f"activated version {version}")


@routing_app.command("rollback")
def routing_rollback(config: ConfigOption = None) -> None:
    """Activate again the version that was active before the current one."""
    try:
        number = _routing(config).rollback(_cli_actor())
    except PacsflowError as exc:
        _fail(exc)
    typer.echo(f"rolled back: version {number} is active")


@routing_app.command("diff")
def routing_diff(
    old: Annotated[int, typer.Argument(min=1, metavar="OLD", help="The version to compare from.")],
    new: Annotated[int, typer.Argument(min=1, metavar="NEW", help="The version to compare to.")],
    config: ConfigOption = None,
) -> None:
    """Show what changed between two versions, as a unified diff of their canonical forms.

    Layout, quoting and shorthand are not differences; empty output means
    the same rules.
    """
    try:
        diff = _routing(config).diff(old, new)
    except PacsflowError as exc:
        _fail(exc)
    if diff:
        typer.echo(diff, nl=False)
    else:
        typer.echo(f"versions {old} and {new} route the same way", err=True)


@routing_app.command("dry-run")
def routing_dry_run(
    file: RulesFileArgument,
    since: Annotated[
        str | None,
        typer.Option(
            metavar="ISO",
            help="Studies received from this time (ISO 8601; local time unless it has an "
            "offset). Default: 7 days before --until.",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(metavar="ISO", help="...up to this time, excluded. Default: now."),
    ] = None,
    changed_only: Annotated[
        bool,
        typer.Option("--changed-only", help="Only the studies the candidate routes differently."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    config: ConfigOption = None,
) -> None:
    """Show where the active rules and a candidate rule file send each recent study.

    Evaluates both over the published studies received in the period and
    prints, per study, the active and the candidate destinations and the
    change (+added, -removed). Nothing is sent and nothing is saved.
    """
    end = _when(until, "--until") if until is not None else _clock().now()
    start = _when(since, "--since") if since is not None else end - timedelta(days=7)
    if start >= end:
        raise typer.BadParameter(
            f"{start.isoformat(timespec='seconds')} is not before --until "
            f"({end.isoformat(timespec='seconds')})",
            param_hint="--since",
        )
    text = _rules_text(file)
    try:
        found = _routing(config).dry_run(text, start, end)
    except PacsflowError as exc:
        _fail(exc)
    rows = [d for d in found if d.changed or not changed_only]
    if as_json:
        for d in rows:
            typer.echo(
                json.dumps(
                    {
                        "study_instance_uid": d.key,
                        "active": sorted(d.active),
                        "candidate": sorted(d.candidate),
                        "added": sorted(d.added),
                        "removed": sorted(d.removed),
                        "changed": d.changed,
                    }
                )
            )
        return
    if not rows:
        typer.echo(
            f"no {'changed ' if changed_only else ''}studies received between "
            f"{start.isoformat(timespec='seconds')} and {end.isoformat(timespec='seconds')}"
        )
        return
    width = max(len("study"), *(len(d.key) for d in rows))
    lists = [
        (", ".join(sorted(d.active)) or "-", ", ".join(sorted(d.candidate)) or "-") for d in rows
    ]
    a_width = max(len("active"), *(len(a) for a, _ in lists))
    c_width = max(len("candidate"), *(len(c) for _, c in lists))
    typer.echo(f"{'study':{width}}  {'active':{a_width}}  {'candidate':{c_width}}  change")
    for d, (active, candidate) in zip(rows, lists, strict=True):
        change = " ".join(
            [*(f"+{x}" for x in sorted(d.added)), *(f"-{x}" for x in sorted(d.removed))]
        )
        typer.echo(f"{d.key:{width}}  {active:{a_width}}  {candidate:{c_width}}  {change or '='}")
    changed = sum(d.changed for d in found)
    typer.echo(f"{len(found)} study(ies), {changed} routed differently by the candidate")


def _reconciliation(config: Path | None) -> Reconciliation:
    from pacsflow.app import prepare_database, reconciliation

    settings = _settings(config)
    prepare_database(settings)
    return reconciliation(settings, clock=_clock())


def _exception_queue(config: Path | None) -> ExceptionQueue:
    from pacsflow.app import exception_queue, prepare_database

    settings = _settings(config)
    prepare_database(settings)
    return exception_queue(settings, clock=_clock())


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


def _done(what: str, done: Done) -> None:
    typer.echo(
        f"{what}: the study is {done.state.value} "
        f"(action {done.action_id}; `pacsflow exceptions undo {done.action_id}` reverts it)"
    )


@exceptions_app.command("list")
def exceptions_list(
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    config: ConfigOption = None,
) -> None:
    """List open exceptions, overdue first (marked !), then oldest first.

    Shows the reason, the mismatch source, the age against the reason's target,
    the owner, and the identifiers the images arrived with.
    """
    items = _exception_queue(config).open(limit)
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


@exceptions_app.command("candidates")
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
        found = _exception_queue(config).candidates(exception_id, limit)
    except PacsflowError as exc:
        _fail(exc)
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


@exceptions_app.command("match")
def exceptions_match(
    exception_id: ExceptionArgument,
    accession: Annotated[
        str, typer.Argument(metavar="ACCESSION", help="The accession number of the order.")
    ],
    config: ConfigOption = None,
) -> None:
    """Match a held study to an order: it takes the order's patient and is published."""
    try:
        done = _reconciliation(config).match_to_order(exception_id, accession, _cli_actor())
    except PacsflowError as exc:
        _fail(exc)
    _done(f"matched exception {exception_id} to order {accession}", done)


@exceptions_app.command("assign")
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
        done = _reconciliation(config).assign_to_patient(exception_id, patient, _cli_actor())
    except PacsflowError as exc:
        _fail(exc)
    _done(f"assigned exception {exception_id} to patient {patient_id}", done)


@exceptions_app.command("reject")
def exceptions_reject(
    exception_id: ExceptionArgument,
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why (kept with the study and audited).")
    ],
    config: ConfigOption = None,
) -> None:
    """Reject a held study: hidden from clinical use for good, kept, with the reason."""
    try:
        done = _reconciliation(config).reject(exception_id, reason, _cli_actor())
    except PacsflowError as exc:
        _fail(exc)
    _done(f"rejected exception {exception_id}", done)


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
StudyArgument = Annotated[str, typer.Argument(metavar="STUDY_UID", help="The Study Instance UID.")]


@exceptions_app.command("correct")
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
        done = _reconciliation(config).correct(exception_id, correction, _cli_actor())
    except PacsflowError as exc:
        _fail(exc)
    _done(f"corrected exception {exception_id} ({correction.describe()})", done)


@studies_app.command("correct")
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
        done = _reconciliation(config).correct_study(study_uid, correction, _cli_actor())
    except PacsflowError as exc:
        _fail(exc)
    _done(f"corrected study {study_uid} ({correction.describe()})", done)


@studies_app.command("split")
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
        done = _reconciliation(config).split(
            study_uid,
            series_uid,
            _cli_actor(),
            target_study_uid=to,
            correction=Correction(patient_id, issuer, accession),
        )
    except PacsflowError as exc:
        _fail(exc)
    typer.echo(
        f"moved series {series_uid} to study {done.target_study_uid} "
        f"({done.target_state.value}); study {study_uid} is {done.state.value} "
        f"(action {done.action_id}; `pacsflow exceptions undo {done.action_id}` reverts it)"
    )


@exceptions_app.command("undo")
def exceptions_undo(
    action_id: Annotated[
        int,
        typer.Argument(min=1, metavar="ACTION_ID", help="The action id an action printed."),
    ],
    config: ConfigOption = None,
) -> None:
    """Undo a reconciliation action: the study and its exception are exactly as before."""
    try:
        state = _reconciliation(config).undo(action_id, _cli_actor())
    except PacsflowError as exc:
        _fail(exc)
    typer.echo(f"undid action {action_id}: the study is {state.value}")


@exceptions_app.command("owner")
def exceptions_owner(
    exception_id: ExceptionArgument,
    user: Annotated[
        str, typer.Argument(metavar="USER", help="The username of who works the exception.")
    ],
    config: ConfigOption = None,
) -> None:
    """Name the user who works an exception (undo restores the previous owner)."""
    try:
        done = _reconciliation(config).assign_owner(exception_id, user, _cli_actor())
    except PacsflowError as exc:
        _fail(exc)
    typer.echo(
        f"exception {exception_id} is owned by {user.strip()} "
        f"(action {done.action_id}; `pacsflow exceptions undo {done.action_id}` reverts it)"
    )


class ReportFormat(enum.StrEnum):
    """How the daily report is printed."""

    CSV = "csv"
    JSON = "json"


@exceptions_app.command("report")
def exceptions_report(
    day: Annotated[
        str | None,
        typer.Option(metavar="YYYY-MM-DD", help="The day to report. Default: today."),
    ] = None,
    fmt: Annotated[ReportFormat, typer.Option("--format", "-f", help="csv or json.")] = (
        ReportFormat.CSV
    ),
    tz: Annotated[
        str, typer.Option(help="The time zone the day is in (IANA name, e.g. Europe/Paris).")
    ] = "UTC",
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
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise typer.BadParameter(f"unknown time zone {tz!r}", param_hint="--tz") from exc
    try:
        report = _exception_queue(config).report(when, zone)
    except PacsflowError as exc:
        _fail(exc)
    if fmt is ReportFormat.JSON:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        typer.echo(report.as_csv(), nl=False)


def main() -> None:
    """Entry point of the `pacsflow` script."""
    sys.exit(app())


__all__ = ["CliContext", "app", "main"]
