"""Priors chosen for prefetch and how their retrieval went."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import Query
from pydantic import BaseModel

from pacsflow.adapters.http.context import Services
from pacsflow.adapters.http.routes import Routes
from pacsflow.domain.access import Permission

routes = Routes(tags=["studies"])


class PriorOut(BaseModel):
    """A prior study chosen for prefetch, and how its retrieval went."""

    request: str
    study_instance_uid: str
    archive: str
    patient_id: str
    issuer: str
    state: str
    study_date: date | None
    modalities: list[str]
    description: str
    requested_at: datetime
    completed_at: datetime | None
    latency_seconds: float | None
    instances: int
    last_error: str


@routes.get(
    "/api/priors",
    Permission.READ_STUDIES,
)
def priors(
    services: Services,
    request: Annotated[str | None, Query(max_length=200)] = None,
    accession_number: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[PriorOut]:
    """Priors chosen for prefetch (of one order: accession_number; or request=study:UID),
    with their state and retrieval latency."""
    key = f"order:{accession_number}" if accession_number else request
    return [
        PriorOut(
            request=p.request_key,
            study_instance_uid=p.study_instance_uid,
            archive=p.archive or "local",
            patient_id=p.patient.value,
            issuer=p.patient.issuer,
            state=p.state.value,
            study_date=p.study_date,
            modalities=list(p.modalities),
            description=p.description,
            requested_at=p.requested_at,
            completed_at=p.completed_at,
            latency_seconds=p.latency,
            instances=p.instances,
            last_error=p.last_error,
        )
        for p in services.prefetch.priors(key, limit)
    ]
