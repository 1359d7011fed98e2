"""The exceptions queue: held studies, the day's report, candidates to reconcile with."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Query
from fastapi.responses import Response
from pydantic import BaseModel

from pacsflow.adapters.http.context import Services
from pacsflow.adapters.http.routes import Routes
from pacsflow.adapters.http.schemas import DbId, PatientOut, patient_out
from pacsflow.domain.access import Permission
from pacsflow.domain.candidates import Candidate
from pacsflow.domain.errors import InvalidInput
from pacsflow.workflow.exception_queue import QueueItem

routes = Routes(tags=["exceptions"])


class ExceptionOut(BaseModel):
    """A study held in the exceptions queue."""

    id: int
    study_instance_uid: str
    reason: str
    source: str
    detail: str
    opened_at: datetime
    age_seconds: int
    received_patient_id: str
    received_issuer: str
    received_patient_name: str
    received_birth_date: date | None
    received_accession_number: str
    candidate_accession_number: str | None
    owner: str
    target_minutes: int
    due_at: datetime
    overdue: bool


class EvidenceOut(BaseModel):
    """One reason a candidate fits (positive points) or does not (negative)."""

    code: str
    points: int
    detail: str


class CandidateOut(BaseModel):
    """An order to match the held study to, or a patient to assign it to, with its score."""

    kind: str
    score: int
    accession_number: str | None
    order_status: str | None
    modality: str | None
    scheduled_start: datetime | None
    requested_procedure_description: str | None
    patient: PatientOut | None
    reasons: list[EvidenceOut]


class ReportRowOut(BaseModel):
    """The day's figures for one reason and mismatch source (`all`: every one)."""

    reason: str
    source: str
    opened: int
    resolved: int
    matched: int
    assigned: int
    rejected: int
    undone: int
    late_matched: int
    other_actions: int
    open_at_end: int
    overdue_at_end: int
    median_seconds: float | None
    p90_seconds: float | None


class ExceptionReportOut(BaseModel):
    """The exceptions queue over one day (to `end`: the day's end, or now)."""

    day: date
    start: datetime
    end: datetime
    total: ReportRowOut
    rows: list[ReportRowOut]


def _exception(item: QueueItem) -> ExceptionOut:
    e = item.exception
    r = e.received
    return ExceptionOut(
        id=e.id,
        study_instance_uid=e.study_instance_uid,
        reason=e.reason.value,
        source=e.source.value,
        detail=e.detail,
        opened_at=e.opened_at,
        age_seconds=int(item.age.total_seconds()),
        owner=e.owner,
        target_minutes=int(item.target.total_seconds() // 60),
        due_at=item.due_at,
        overdue=item.is_overdue,
        received_patient_id=r.patient.value,
        received_issuer=r.patient.issuer,
        received_patient_name=r.demographics.name.display(),
        received_birth_date=r.demographics.birth_date,
        received_accession_number=r.accession_number,
        candidate_accession_number=e.candidate_order,
    )


def _candidate(c: Candidate) -> CandidateOut:
    o = c.order
    return CandidateOut(
        kind=c.kind.value,
        score=c.score,
        accession_number=o.accession_number if o else None,
        order_status=o.status.value if o else None,
        modality=o.modality if o else None,
        scheduled_start=o.scheduled_start if o else None,
        requested_procedure_description=o.requested_procedure_description if o else None,
        patient=patient_out(c.patient) if c.patient else None,
        reasons=[EvidenceOut(code=e.code, points=e.points, detail=e.detail) for e in c.evidence],
    )


@routes.get(
    "/api/exceptions",
    Permission.READ_EXCEPTIONS,
)
def exceptions(
    services: Services, limit: Annotated[int, Query(ge=1, le=5000)] = 500
) -> list[ExceptionOut]:
    """Open exceptions, overdue first, then oldest: reason, mismatch source, owner, age,
    target time for the reason and whether it is past it."""
    return [_exception(i) for i in services.exception_queue.open(limit)]


@routes.get(
    "/api/exceptions/report",
    Permission.READ_EXCEPTIONS,
    response_model=ExceptionReportOut,
    responses={200: {"content": {"text/csv": {}}}},
)
def exceptions_report(
    services: Services,
    day: date | None = None,
    fmt: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
    tz: Annotated[str | None, Query(max_length=64)] = None,
) -> Any:
    """Per reason and mismatch source: opened and resolved that day, actions (matched,
    assigned, rejected, undone, late-matched), median and p90 time to resolution, open and
    overdue at the end of the day (the day in tz, default the site's; today by default)."""
    try:
        zone = ZoneInfo(tz) if tz is not None else None
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidInput(f"unknown time zone {tz!r}", location="tz") from exc
    report = services.exception_queue.report(day, zone)
    if fmt == "csv":
        return Response(
            report.as_csv(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="exceptions-{report.day}.csv"'},
        )
    return ExceptionReportOut.model_validate(report.as_dict())


# Candidates show other registered patients' identities: for reconcilers only.
@routes.get(
    "/api/exceptions/{exception_id}/candidates",
    Permission.RECONCILE,
)
def exception_candidates(
    exception_id: DbId, services: Services, limit: Annotated[int, Query(ge=1, le=50)] = 10
) -> list[CandidateOut]:
    """Orders and patients the held study most likely belongs to, best first, each with
    its score (0-100) and the reasons (same or nearly the same patient ID, name, birth
    date, accession number; scheduled near the study date; modality)."""
    return [_candidate(c) for c in services.exception_queue.candidates(exception_id, limit)]
