"""The JSON shapes more than one router answers with: patients, studies; a database id."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import Path
from pydantic import BaseModel

from pacsflow.domain.patients import Patient
from pacsflow.workflow.queries import StudyView

#: A database id in a path: positive and within a 64-bit integer.
DbId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class PatientOut(BaseModel):
    """A registered patient."""

    patient_id: str
    issuer: str
    other_ids: list[dict[str, str]]
    name: str
    family_name: str
    given_name: str
    birth_date: date | None
    sex: str


class StudyOut(BaseModel):
    """An indexed study with its state and the index's patient identity."""

    study_instance_uid: str
    state: str
    accession_number: str
    patient: PatientOut | None
    received_patient_id: str
    study_date: date | None
    study_description: str
    modalities: list[str]
    series_count: int
    instance_count: int
    received_at: datetime | None
    source_ae: str


def patient_out(p: Patient) -> PatientOut:
    """A patient as the API shows it."""
    d = p.demographics
    return PatientOut(
        patient_id=p.primary.value,
        issuer=p.primary.issuer,
        other_ids=[{"patient_id": i.value, "issuer": i.issuer} for i in p.identifiers[1:]],
        name=d.name.display(),
        family_name=d.name.family,
        given_name=d.name.given,
        birth_date=d.birth_date,
        sex=d.sex,
    )


def study_out(v: StudyView) -> StudyOut:
    """A study as the API shows it."""
    s = v.study
    return StudyOut(
        study_instance_uid=s.study_instance_uid,
        state=s.state.value,
        accession_number=s.accession_number,
        patient=patient_out(v.patient) if v.patient else None,
        received_patient_id=s.received.patient.value,
        study_date=s.study_date,
        study_description=s.study_description,
        modalities=list(s.modalities),
        series_count=s.series_count,
        instance_count=s.instance_count,
        received_at=s.received_at,
        source_ae=s.source_ae,
    )


__all__ = ["DbId", "PatientOut", "StudyOut", "patient_out", "study_out"]
