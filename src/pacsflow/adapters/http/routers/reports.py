"""Reports (results): receive a version, list them, a study's status, delivery figures."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Path, Query
from pydantic import BaseModel, Field

from pacsflow.adapters.http.auth import Caller
from pacsflow.adapters.http.context import Services
from pacsflow.adapters.http.routes import Routes
from pacsflow.domain.access import Permission
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier
from pacsflow.domain.reports import Report, ReportRecord, status_from_code
from pacsflow.domain.uids import Uid

routes = Routes(tags=["reports"])


class ReportIn(BaseModel):
    """A report version from a reporting system that does not speak HL7."""

    accession_number: str = Field(default="", max_length=64)
    study_instance_uid: str = Field(default="", max_length=64)
    #: HL7 result status: P preliminary, F final, C corrected, X cancelled, I in progress.
    status: str = Field(max_length=1)
    text: str = Field(default="", max_length=200_000)
    radiologist: str = Field(default="", max_length=200)
    patient_id: str = Field(default="", max_length=64)
    issuer: str = Field(default="", max_length=64)
    observed_at: datetime | None = None
    report_id: str = Field(default="", max_length=64)


class ReportOut(BaseModel):
    """A kept report version: attached to its study, or flagged with why not."""

    id: int
    accession_number: str
    study_instance_uid: str
    status: str
    text: str
    radiologist: str
    observed_at: datetime | None
    received_at: datetime
    source: str
    attached_study_uid: str | None
    flag: str


class StudyReportsOut(BaseModel):
    """A study's report status and its versions, oldest first."""

    study_instance_uid: str
    report_status: str
    versions: list[ReportOut]


class DeliveryStatsOut(BaseModel):
    """How well results reach one subscriber."""

    subscriber: str
    total: int
    delivered: int
    delivered_in_time: int
    failed: int
    pending: int
    success_rate: float | None


def _report(r: ReportRecord) -> ReportOut:
    return ReportOut(
        id=r.id,
        accession_number=r.report.accession_number,
        study_instance_uid=r.report.study_instance_uid,
        status=r.report.status.value,
        text=r.report.text,
        radiologist=r.report.radiologist,
        observed_at=r.report.observed_at,
        received_at=r.received_at,
        source=r.source,
        attached_study_uid=r.attached_study_uid,
        flag=r.flag,
    )


@routes.post("/api/reports", Permission.WRITE_REPORTS, status_code=201)
def post_report(
    body: ReportIn,
    caller: Caller,
    services: Services,
) -> ReportOut:
    """Keep a report version; it attaches to its study (by UID, else accession) once the
    study is published, and goes to the result subscribers."""
    patient = (
        PatientIdentifier(PatientId(body.patient_id), Issuer(body.issuer))
        if body.patient_id
        else None
    )
    report = Report(
        accession_number=body.accession_number.strip(),
        status=status_from_code(body.status),
        text=body.text,
        patient=patient,
        study_instance_uid=body.study_instance_uid.strip(),
        radiologist=body.radiologist,
        observed_at=body.observed_at,
        report_id=body.report_id,
    )
    return _report(services.results.receive(report, f"api:{caller.username}"))


@routes.get(
    "/api/reports",
    Permission.READ_STUDIES,
)
def list_reports(
    services: Services,
    unattached: bool = False,
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
) -> list[ReportOut]:
    """Report versions, newest first; unattached=true: those still waiting for a study."""
    found = services.results.reports(unattached_only=unattached, limit=limit)
    return [_report(r) for r in found]


@routes.get(
    "/api/studies/{study_uid}/reports",
    Permission.READ_STUDIES,
)
def study_reports(
    study_uid: Annotated[str, Path(max_length=64)], services: Services
) -> StudyReportsOut:
    """A study's report status (unread, in_progress, preliminary, final, corrected)."""
    uid = Uid(study_uid)
    return StudyReportsOut(
        study_instance_uid=uid,
        report_status=services.results.status_of(uid).value,
        versions=[_report(r) for r in services.results.reports_of(uid)],
    )


@routes.get(
    "/api/results/deliveries",
    Permission.READ_JOBS,
)
def delivery_stats(services: Services) -> list[DeliveryStatsOut]:
    """Per subscriber: messages delivered, on time, failed, pending, and the success rate."""
    return [
        DeliveryStatsOut(
            subscriber=d.subscriber,
            total=d.total,
            delivered=d.delivered,
            delivered_in_time=d.delivered_in_time,
            failed=d.failed,
            pending=d.pending,
            success_rate=d.success_rate,
        )
        for d in services.results.delivery_stats()
    ]
