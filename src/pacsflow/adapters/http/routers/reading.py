"""The reading worklist and radiologists' claims on its studies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Path, Query
from pydantic import BaseModel

from pacsflow.adapters.http.auth import Caller
from pacsflow.adapters.http.context import Services
from pacsflow.adapters.http.routes import Routes
from pacsflow.domain.access import Permission
from pacsflow.domain.reading import Claim, ReadingFilter
from pacsflow.domain.uids import Uid
from pacsflow.workflow.reading import ReadingEntry

routes = Routes(tags=["reading"])
StudyUid = Annotated[str, Path(max_length=64)]


class ReadingItemOut(BaseModel):
    """A study on the reading worklist: why it is where it is, and who has claimed it."""

    study_instance_uid: str
    accession_number: str
    patient_id: str | None
    issuer: str | None
    patient_name: str
    modalities: list[str]
    procedure_code: str
    procedure_description: str
    priority: str
    triage_score: float | None
    received_at: datetime
    waiting_minutes: float
    target_minutes: float
    overdue: bool
    report_status: str
    priors_ready: bool | None
    claimed_by: str | None
    claimed_at: datetime | None
    claim_expires_at: datetime | None
    site: str


class ClaimOut(BaseModel):
    """A radiologist's claim on a study."""

    study_instance_uid: str
    claimed_by: str
    claimed_at: datetime
    claim_expires_at: datetime


def _reading_item(e: ReadingEntry) -> ReadingItemOut:
    i, claim = e.item, e.claim
    return ReadingItemOut(
        study_instance_uid=i.study_instance_uid,
        accession_number=i.accession_number,
        patient_id=i.patient.value if i.patient else None,
        issuer=i.patient.issuer if i.patient else None,
        patient_name=i.patient_name,
        modalities=list(i.modalities),
        procedure_code=i.procedure_code,
        procedure_description=i.procedure_description,
        priority=i.priority.value,
        triage_score=i.triage_score,
        received_at=i.waiting_since,
        waiting_minutes=round(e.waiting.total_seconds() / 60, 1),
        target_minutes=e.target.total_seconds() / 60,
        overdue=e.is_overdue,
        report_status=e.report_status.value,
        priors_ready=i.priors_ready,
        claimed_by=claim.reader if claim else None,
        claimed_at=claim.claimed_at if claim else None,
        claim_expires_at=claim.expires_at if claim else None,
        site=e.site,
    )


def _claim_out(claim: Claim) -> ClaimOut:
    return ClaimOut(
        study_instance_uid=claim.study_instance_uid,
        claimed_by=claim.reader,
        claimed_at=claim.claimed_at,
        claim_expires_at=claim.expires_at,
    )


@routes.get(
    "/api/reading-worklist",
    Permission.READ_STUDIES,
)
def reading_worklist(
    services: Services,
    site: Annotated[str, Query(max_length=64)] = "",
    modality: Annotated[str, Query(max_length=16)] = "",
    procedure: Annotated[list[str] | None, Query()] = None,
    reader: Annotated[str, Query(max_length=64)] = "",
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[ReadingItemOut]:
    """Published studies waiting for their final report: STAT, ASAP, ROUTINE; then triage
    score; then most overdue against the priority's target. procedure (repeatable) is a
    procedure code or part of its description; reader: studies that user has claimed."""
    flt = ReadingFilter(
        modality=modality,
        procedures=tuple(p[:200] for p in (procedure or ())[:50]),
        reader=reader,
    )
    return [_reading_item(e) for e in services.reading.entries(flt, site=site, limit=limit)]


@routes.post("/api/reading-worklist/{study_uid}/claim", Permission.CLAIM_READING)
def claim_study(study_uid: StudyUid, caller: Caller, services: Services) -> ClaimOut:
    """Claim a study for reading (again: extend the claim); 409 names who holds it."""
    return _claim_out(services.reading.claim(Uid(study_uid), caller.username))


@routes.post("/api/reading-worklist/{study_uid}/release", Permission.CLAIM_READING, status_code=204)
def release_study(study_uid: StudyUid, caller: Caller, services: Services) -> None:
    """Give a claimed study back (only its holder may: 409 otherwise)."""
    services.reading.release(Uid(study_uid), caller.username)
