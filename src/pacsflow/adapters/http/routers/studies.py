"""Studies in the index: search, one study."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from pacsflow.adapters.http.context import Services
from pacsflow.adapters.http.routes import Routes
from pacsflow.adapters.http.schemas import StudyOut, study_out
from pacsflow.domain.access import Permission
from pacsflow.domain.errors import NotFound
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier
from pacsflow.domain.studies import StudyFilter
from pacsflow.domain.uids import Uid

routes = Routes(tags=["studies"])


@routes.get(
    "/api/studies",
    Permission.READ_STUDIES,
)
def studies(
    services: Services,
    patient_id: str = "",
    issuer: str = "",
    accession_number: str = "",
    include_held: bool = False,
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
) -> list[StudyOut]:
    """Studies, newest first; held (exception) studies only with include_held."""
    flt = StudyFilter(
        patient=PatientIdentifier(PatientId(patient_id), Issuer(issuer)) if patient_id else None,
        accession_number=accession_number,
        is_published_only=not include_held,
        limit=limit,
    )
    return [study_out(v) for v in services.queries.studies(flt)]


@routes.get(
    "/api/studies/{study_uid}",
    Permission.READ_STUDIES,
)
def study(study_uid: str, services: Services) -> StudyOut:
    """One study, whatever its state."""
    view = services.queries.study(Uid(study_uid))
    if view is None:
        raise NotFound(f"no study {study_uid}")
    return study_out(view)
