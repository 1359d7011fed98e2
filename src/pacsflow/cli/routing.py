"""`pacsflow routing`: versioned routing rules, dry runs, activation and rollback."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Annotated

import typer

from pacsflow.cli._common import ConfigOption, cli_actor, fail, services
from pacsflow.domain.calendar import local_time
from pacsflow.domain.errors import PacsflowError

app = typer.Typer(
    help=(
        "Manage the routing rules (see docs/routing.md): save a rule file as a new version, "
        "list, show and compare versions, activate one or roll back, and dry-run a candidate "
        "over the studies received recently. A running node routes by the active version."
    ),
    no_args_is_help=True,
)


def _rules_text(file: str) -> str:
    """The text of a rule file; `-` reads standard input."""
    if file == "-":
        return sys.stdin.read()
    try:
        return Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {file}: {exc}", param_hint="FILE") from exc


def _when(text: str, option: str, zone: tzinfo) -> datetime:
    """An ISO 8601 date or date-time; one without a UTC offset is the site's local time."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r} is not an ISO 8601 date or date-time (e.g. 2024-05-01T08:00)",
            param_hint=option,
        ) from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)


RulesFileArgument = Annotated[
    str,
    typer.Argument(
        metavar="FILE", help="The rules as YAML (or JSON) text; '-' reads standard input."
    ),
]
VersionArgument = Annotated[
    int, typer.Argument(min=1, metavar="N", help="A version number (see `list`).")
]


@app.command("list")
def routing_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    config: ConfigOption = None,
) -> None:
    """List the saved versions, newest first: number, active mark (*), author, time, comment."""
    service = services(config)
    views = service.routing.versions()
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
        saved = local_time(v.created_at, service.clock.zone).isoformat(sep=" ", timespec="seconds")
        typer.echo(
            f"{v.version:>7}  {'*' if view.is_active else '':6}  {v.author:20} {saved:25} "
            f"{v.comment}"
        )


@app.command("show")
def routing_show(
    version: Annotated[
        int | None,
        typer.Argument(min=1, help="The version number; default: the active version."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Print the rules of a version as they were saved (pipe it to a file to edit and save)."""
    service = services(config).routing
    try:
        found = service.version(version) if version is not None else service.active()
    except PacsflowError as exc:
        fail(exc)
    if found is None:
        typer.secho("no routing rules are active yet", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo(found.text, nl=not found.text.endswith("\n"))


@app.command("save")
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
        number = services(config).routing.save(text, cli_actor(), comment, activate=activate)
    except PacsflowError as exc:
        fail(exc)
    typer.echo(f"saved version {number}" + (" and activated it" if activate else ""))


@app.command("activate")
def routing_activate(version: VersionArgument, config: ConfigOption = None) -> None:
    """Route the instances that arrive from now on by this version."""
    try:
        services(config).routing.activate(version, cli_actor())
    except PacsflowError as exc:
        fail(exc)
    typer.echo(f"activated version {version}")


@app.command("rollback")
def routing_rollback(config: ConfigOption = None) -> None:
    """Activate again the version that was active before the current one."""
    try:
        number = services(config).routing.rollback(cli_actor())
    except PacsflowError as exc:
        fail(exc)
    typer.echo(f"rolled back: version {number} is active")


@app.command("diff")
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
        diff = services(config).routing.diff(old, new)
    except PacsflowError as exc:
        fail(exc)
    if diff:
        typer.echo(diff, nl=False)
    else:
        typer.echo(f"versions {old} and {new} route the same way", err=True)


@app.command("dry-run")
def routing_dry_run(
    file: RulesFileArgument,
    since: Annotated[
        str | None,
        typer.Option(
            metavar="ISO",
            help="Studies received from this time (ISO 8601; the site's local time unless "
            "it has an offset). Default: 7 days before --until.",
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
    found_services = services(config)
    site = found_services.clock
    end = _when(until, "--until", site.zone) if until is not None else site.now()
    start = _when(since, "--since", site.zone) if since is not None else end - timedelta(days=7)
    if start >= end:
        raise typer.BadParameter(
            f"{start.isoformat(timespec='seconds')} is not before --until "
            f"({end.isoformat(timespec='seconds')})",
            param_hint="--since",
        )
    text = _rules_text(file)
    try:
        found = found_services.routing.dry_run(text, start, end)
    except PacsflowError as exc:
        fail(exc)
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


__all__ = ["app"]
