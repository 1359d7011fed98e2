"""`pacsflow jobs`: the durable job queue."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pacsflow.cli._common import ConfigOption, fail, services
from pacsflow.domain.errors import PacsflowError
from pacsflow.domain.jobs import JobState

app = typer.Typer(
    help=(
        "Look after the durable job queue (forwarding, prefetch, result delivery, storage "
        "commitment reports): list jobs, see dead letters, replay them."
    ),
    no_args_is_help=True,
)


@app.command("list")
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
    found = services(config).jobs.list(state=state, kind=kind, limit=limit)
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


@app.command("stats")
def jobs_stats(config: ConfigOption = None) -> None:
    """Queue depth by state and kind, the oldest pending job's age, failing destinations."""
    stats = services(config).jobs.stats()
    age = stats.oldest_pending_age
    typer.echo(f"depth (pending + running): {stats.depth}")
    typer.echo(f"oldest pending: {age.total_seconds():.0f} s" if age else "oldest pending: none")
    for kind, states in sorted(stats.by_kind.items()):
        typer.echo(f"  {kind}: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    for destination, count in sorted(stats.failing_destinations.items()):
        typer.echo(f"  failing toward {destination or '(none)'}: {count}")


@app.command("replay")
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
    service = services(config).jobs
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
            fail(exc)
        typer.echo(f"replayed job {job_id}")


__all__ = ["app"]
