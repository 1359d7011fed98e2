"""Registered patients and their studies."""

from __future__ import annotations

from pydantic import BaseModel

from pacsflow.adapters.http.context import Services
from pacsflow.adapters.http.routes import Routes
from pacsflow.adapters.http.schemas import PatientOut, StudyOut, patient_out, study_out
from pacsflow.domain.access import Permission
from pacsflow.domain.errors import NotFound
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier
from pacsflow.domain.studies import StudyFilter

routes = Routes(tags=["patients"])


class PatientDetailOut(BaseModel):
    """A patient with their published studies and orders."""

    patient: PatientOut
    studies: list[StudyOut]


@routes.get(
    "/api/patients/{patient_id}",
    Permission.READ_PATIENTS,
)
def patient(patient_id: str, services: Services, issuer: str = "") -> PatientDetailOut:
    """A registered patient and their published studies."""
    identifier = PatientIdentifier(PatientId(patient_id), Issuer(issuer))
    found = services.queries.patient_as_queried(identifier)
    if found is None:
        raise NotFound(f"no patient {patient_id}" + (f" of issuer {issuer}" if issuer else ""))
    views = services.queries.studies(StudyFilter(patient=found.primary, limit=1000))
    return PatientDetailOut(patient=patient_out(found), studies=[study_out(v) for v in views])
