"""Alerts an operator must look at: routing loops, studies sent back, C-STOREs refused."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Query
from pydantic import BaseModel

from pacsflow.adapters.http.context import Services
from pacsflow.adapters.http.routes import Routes
from pacsflow.domain.access import Permission

routes = Routes(tags=["jobs"])


class AlertOut(BaseModel):
    """Something an operator must look at: a routing loop, a study sent back."""

    kind: str
    subject: str
    peer: str
    detail: str
    first_at: datetime
    last_at: datetime
    count: int


@routes.get(
    "/api/alerts",
    Permission.READ_JOBS,
)
def alerts(services: Services, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[AlertOut]:
    """Alerts (routing loops, studies sent back, C-STOREs refused: disk full), newest first."""
    return [
        AlertOut(
            kind=a.kind,
            subject=a.subject,
            peer=a.peer,
            detail=a.detail,
            first_at=a.first_at,
            last_at=a.last_at,
            count=a.count,
        )
        for a in services.routing.alerts(limit)
    ]
