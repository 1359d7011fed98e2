"""Routing rules: versions, activation and rollback, diff, dry run; where a study was sent."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Path, Query
from pydantic import BaseModel

from pacsflow.adapters.http.auth import Actor
from pacsflow.adapters.http.context import Services
from pacsflow.adapters.http.routes import Routes
from pacsflow.adapters.http.schemas import DbId
from pacsflow.domain.access import Permission
from pacsflow.domain.errors import NotFound
from pacsflow.domain.uids import Uid
from pacsflow.workflow.routing import VersionView

routes = Routes(tags=["routing"])
_VersionNumber = Annotated[int, Query(ge=1, le=2**63 - 1)]


class RulesIn(BaseModel):
    """A new version of the routing rules (YAML or JSON text)."""

    text: str
    comment: str = ""
    activate: bool = False


class VersionOut(BaseModel):
    """A saved version of the routing rules."""

    version: int
    author: str
    comment: str
    created_at: datetime
    is_active: bool
    text: str


class DryRunIn(BaseModel):
    """Candidate rules and the period of studies to evaluate them on."""

    text: str
    since: datetime
    until: datetime
    changed_only: bool = False


class RouteDifferenceOut(BaseModel):
    """Where the active rules send a study, where the candidate would, and the difference."""

    study_instance_uid: str
    active: list[str]
    candidate: list[str]
    added: list[str]
    removed: list[str]
    changed: bool


class ForwardOut(BaseModel):
    """One instance sent (or on its way) to one destination."""

    sop_instance_uid: str
    destination: str
    state: str
    last_error: str


def _version_out(view: VersionView) -> VersionOut:
    v = view.version
    return VersionOut(
        version=v.version,
        author=v.author,
        comment=v.comment,
        created_at=v.created_at,
        is_active=view.is_active,
        text=v.text,
    )


def _version(services: Services, number: int) -> VersionOut:
    for view in services.routing.versions():
        if view.version.version == number:
            return _version_out(view)
    raise NotFound(f"no routing rules version {number}")


@routes.get("/api/routing/versions", Permission.MANAGE_CONFIG)
def routing_versions(services: Services) -> list[VersionOut]:
    """Every version of the routing rules, newest first, the active one marked."""
    return [_version_out(v) for v in services.routing.versions()]


@routes.post("/api/routing/versions", Permission.MANAGE_CONFIG, status_code=201)
def routing_save(body: RulesIn, actor: Actor, services: Services) -> VersionOut:
    """Save the rules as a new version (checked first: 400 says what is wrong)."""
    number = services.routing.save(body.text, actor, body.comment, activate=body.activate)
    return _version(services, number)


@routes.get("/api/routing/versions/{version}", Permission.MANAGE_CONFIG)
def routing_version(version: DbId, services: Services) -> VersionOut:
    """One version of the routing rules."""
    return _version(services, version)


@routes.post("/api/routing/versions/{version}/activate", Permission.MANAGE_CONFIG)
def routing_activate(version: DbId, actor: Actor, services: Services) -> VersionOut:
    """Route from now on by this version."""
    services.routing.activate(version, actor)
    return _version(services, version)


@routes.post("/api/routing/rollback", Permission.MANAGE_CONFIG)
def routing_rollback(actor: Actor, services: Services) -> VersionOut:
    """Activate the version that was active before the current one."""
    return _version(services, services.routing.rollback(actor))


@routes.get("/api/routing/diff", Permission.MANAGE_CONFIG)
def routing_diff(old: _VersionNumber, new: _VersionNumber, services: Services) -> dict[str, str]:
    """A unified diff between two versions (canonical form)."""
    return {"diff": services.routing.diff(old, new)}


@routes.post("/api/routing/dry-run", Permission.MANAGE_CONFIG)
def routing_dry_run(body: DryRunIn, services: Services) -> list[RouteDifferenceOut]:
    """Where the active rules and the candidate send each study of the period; sends nothing."""
    found = services.routing.dry_run(body.text, body.since, body.until)
    return [
        RouteDifferenceOut(
            study_instance_uid=d.key,
            active=sorted(d.active),
            candidate=sorted(d.candidate),
            added=sorted(d.added),
            removed=sorted(d.removed),
            changed=d.changed,
        )
        for d in found
        if d.changed or not body.changed_only
    ]


@routes.get(
    "/api/studies/{study_uid}/forwards",
    Permission.READ_STUDIES,
    tags=["studies"],
)
def study_forwards(
    study_uid: Annotated[str, Path(max_length=64)], services: Services
) -> list[ForwardOut]:
    """Where the study's instances were routed and how each transfer ended."""
    return [
        ForwardOut(sop_instance_uid=s, destination=d, state=st, last_error=e)
        for s, d, st, e in services.routing.forwards(Uid(study_uid))
    ]
