"""The audit trail, searched by auditors (the search itself is audited)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel

from pacsflow.adapters.http.auth import Actor
from pacsflow.adapters.http.context import Services
from pacsflow.adapters.http.routes import Routes
from pacsflow.domain.access import Permission
from pacsflow.domain.audit_chain import to_dict
from pacsflow.workflow.audit import AuditQuery

routes = Routes(tags=["audit"])


class AuditRecordOut(BaseModel):
    """One record of the audit trail, with its place in the hash chain."""

    id: int
    recorded_at: datetime
    hash: str
    event: dict[str, Any]


@routes.get("/api/audit/events", Permission.READ_AUDIT)
def audit_events(
    auditor: Actor,
    services: Services,
    patient_id: str | None = None,
    user: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditRecordOut]:
    """Audit records by patient, user and time (auditors only; the search is audited)."""
    found = services.trail.search(
        AuditQuery(patient_id=patient_id, user=user, since=since, until=until, limit=limit),
        auditor,
    )
    return [
        AuditRecordOut(id=r.id, recorded_at=r.recorded_at, hash=r.hash, event=to_dict(r.event()))
        for r in found
    ]
