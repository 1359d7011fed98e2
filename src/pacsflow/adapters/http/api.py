"""The FastAPI application: health, studies, exceptions, orders, patients, jobs as JSON."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pacsflow import __version__
from pacsflow.domain.access import Permission, Principal
from pacsflow.domain.audit import ActiveParticipant, Outcome
from pacsflow.domain.audit_chain import to_dict
from pacsflow.domain.audit_events import query as audit_query
from pacsflow.domain.audit_events import user_authentication
from pacsflow.domain.candidates import Candidate
from pacsflow.domain.errors import (
    ConflictingState,
    Forbidden,
    InvalidInput,
    PacsflowError,
    TransientError,
    Unauthenticated,
)
from pacsflow.domain.jobs import Job, JobState
from pacsflow.domain.orders import Order, OrderStatus
from pacsflow.domain.patients import Issuer, Patient, PatientId, PatientIdentifier
from pacsflow.domain.reading import Claim, ReadingFilter, StudyClaimed
from pacsflow.domain.reports import Report, ReportRecord, status_from_code
from pacsflow.domain.studies import StudyFilter
from pacsflow.domain.uids import Uid
from pacsflow.workflow.accounts import Accounts
from pacsflow.workflow.audit import AuditQuery, AuditTrail
from pacsflow.workflow.exception_queue import ExceptionQueue, QueueItem
from pacsflow.workflow.jobs import Jobs, UnknownJob
from pacsflow.workflow.prefetch import Prefetch
from pacsflow.workflow.queries import Queries, StudyView
from pacsflow.workflow.reading import ReadingEntry, ReadingWorklist, UnknownStudy
from pacsflow.workflow.reconciliation import Correction, Reconciliation
from pacsflow.workflow.results import Results
from pacsflow.workflow.routing import Routing, UnknownVersion, VersionView

HealthCheck = Callable[[], dict[str, str]]
#: A database id in a path: positive and within a 64-bit integer.
_Id = Annotated[int, Path(ge=1, le=2**63 - 1)]
#: The largest request body accepted (reconciliation actions are a few hundred bytes).
MAX_BODY_BYTES = 1 << 20


class _ChunkedBodyLimit:
    """Cut off a body that declares no length (chunked) once it passes MAX_BODY_BYTES.

    Raised as HTTP 413 from the read, which the application answers as problem JSON; a
    declared Content-Length is refused earlier (the `_limit_body` middleware). Starlette's
    own `max_body_size` is not used: it rewrites the answer to any request declaring too
    large a length into a plain-text 413, even the JSON one already chosen.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:
                    raise StarletteHTTPException(status_code=413)
            return message

        await self.app(scope, limited, send)


_PROBLEM_STATUS: tuple[tuple[type[PacsflowError], int], ...] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (InvalidInput, 400),
    (ConflictingState, 409),
    (TransientError, 503),
)


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


class OrderOut(BaseModel):
    """An imaging order."""

    accession_number: str
    patient_id: str
    issuer: str
    status: str
    study_instance_uid: str
    requested_procedure_id: str
    requested_procedure_description: str
    procedure_code: str | None
    modality: str
    scheduled_station_ae: str
    scheduled_start: datetime | None
    priority: str
    referring_physician: str


class PatientDetailOut(BaseModel):
    """A patient with their published studies and orders."""

    patient: PatientOut
    studies: list[StudyOut]


def _patient(p: Patient) -> PatientOut:
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


def _study(v: StudyView) -> StudyOut:
    s = v.study
    return StudyOut(
        study_instance_uid=s.study_instance_uid,
        state=s.state.value,
        accession_number=s.accession_number,
        patient=_patient(v.patient) if v.patient else None,
        received_patient_id=s.received.patient.value,
        study_date=s.study_date,
        study_description=s.study_description,
        modalities=list(s.modalities),
        series_count=s.series_count,
        instance_count=s.instance_count,
        received_at=s.received_at,
        source_ae=s.source_ae,
    )


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


def _order(o: Order) -> OrderOut:
    return OrderOut(
        accession_number=o.accession_number,
        patient_id=o.patient.value,
        issuer=o.patient.issuer,
        status=o.status.value,
        study_instance_uid=o.study_instance_uid,
        requested_procedure_id=o.requested_procedure_id,
        requested_procedure_description=o.requested_procedure_description,
        procedure_code=o.procedure_code.value if o.procedure_code else None,
        modality=o.modality,
        scheduled_station_ae=o.scheduled_station_ae,
        scheduled_start=o.scheduled_start,
        priority=o.priority.value,
        referring_physician=o.referring_physician,
    )


def _problem(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
    )


#: Every route and the permission it needs (None: public). A test walks the app and checks
#: that each route is listed here and enforced for every role.
ROUTE_PERMISSIONS: dict[tuple[str, str], Permission | None] = {
    ("GET", "/healthz"): None,
    ("GET", "/api/studies"): Permission.READ_STUDIES,
    ("GET", "/api/studies/{study_uid}"): Permission.READ_STUDIES,
    ("GET", "/api/exceptions"): Permission.READ_EXCEPTIONS,
    ("GET", "/api/orders"): Permission.READ_ORDERS,
    ("GET", "/api/patients/{patient_id}"): Permission.READ_PATIENTS,
    ("GET", "/api/audit/events"): Permission.READ_AUDIT,
    ("POST", "/api/exceptions/{exception_id}/match"): Permission.RECONCILE,
    ("POST", "/api/exceptions/{exception_id}/assign"): Permission.RECONCILE,
    ("POST", "/api/exceptions/{exception_id}/reject"): Permission.RECONCILE,
    ("POST", "/api/reconciliation/{action_id}/undo"): Permission.RECONCILE,
    ("POST", "/api/exceptions/{exception_id}/assign-owner"): Permission.RECONCILE,
    ("POST", "/api/exceptions/{exception_id}/correct"): Permission.RECONCILE,
    ("POST", "/api/studies/{study_uid}/correct"): Permission.RECONCILE,
    ("POST", "/api/studies/{study_uid}/split"): Permission.RECONCILE,
    # Candidates show other registered patients' identities: for reconcilers only.
    ("GET", "/api/exceptions/{exception_id}/candidates"): Permission.RECONCILE,
    ("GET", "/api/exceptions/report"): Permission.READ_EXCEPTIONS,
    ("GET", "/api/jobs"): Permission.READ_JOBS,
    ("GET", "/api/jobs/stats"): Permission.READ_JOBS,
    ("GET", "/api/jobs/{job_id}"): Permission.READ_JOBS,
    ("POST", "/api/jobs/{job_id}/replay"): Permission.MANAGE_JOBS,
    ("POST", "/api/jobs/replay-dead"): Permission.MANAGE_JOBS,
    ("GET", "/api/routing/versions"): Permission.MANAGE_CONFIG,
    ("POST", "/api/routing/versions"): Permission.MANAGE_CONFIG,
    ("GET", "/api/routing/versions/{version}"): Permission.MANAGE_CONFIG,
    ("POST", "/api/routing/versions/{version}/activate"): Permission.MANAGE_CONFIG,
    ("POST", "/api/routing/rollback"): Permission.MANAGE_CONFIG,
    ("GET", "/api/routing/diff"): Permission.MANAGE_CONFIG,
    ("POST", "/api/routing/dry-run"): Permission.MANAGE_CONFIG,
    ("GET", "/api/studies/{study_uid}/forwards"): Permission.READ_STUDIES,
    ("GET", "/api/priors"): Permission.READ_STUDIES,
    ("GET", "/api/alerts"): Permission.READ_JOBS,
    ("GET", "/api/reading-worklist"): Permission.READ_STUDIES,
    ("POST", "/api/reading-worklist/{study_uid}/claim"): Permission.CLAIM_READING,
    ("POST", "/api/reading-worklist/{study_uid}/release"): Permission.CLAIM_READING,
    ("POST", "/api/reports"): Permission.WRITE_REPORTS,
    ("GET", "/api/reports"): Permission.READ_STUDIES,
    ("GET", "/api/studies/{study_uid}/reports"): Permission.READ_STUDIES,
    ("GET", "/api/results/deliveries"): Permission.READ_JOBS,
}


class JobOut(BaseModel):
    """A durable job: what it does, where it stands, its last error."""

    id: int
    kind: str
    state: JobState
    attempts: int
    destination: str
    ordering_key: str
    payload: dict[str, Any]
    created_at: datetime
    run_at: datetime
    finished_at: datetime | None
    last_error: str


class QueueStatsOut(BaseModel):
    """Queue depth, age and failures."""

    depth: int
    by_state: dict[str, int]
    by_kind: dict[str, dict[str, int]]
    oldest_pending_seconds: float | None
    failing_destinations: dict[str, int]


class ReplayedOut(BaseModel):
    """How many dead-lettered jobs were made pending again."""

    replayed: int


def _job(job: Job) -> JobOut:
    return JobOut(
        id=job.id,
        kind=job.kind,
        state=job.state,
        attempts=job.attempts,
        destination=job.destination,
        ordering_key=job.ordering_key,
        payload=dict(job.payload),
        created_at=job.created_at,
        run_at=job.run_at,
        finished_at=job.finished_at,
        last_error=job.last_error,
    )


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


class AlertOut(BaseModel):
    """Something an operator must look at: a routing loop, a study sent back."""

    kind: str
    subject: str
    peer: str
    detail: str
    first_at: datetime
    last_at: datetime
    count: int


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


class MatchIn(BaseModel):
    """Match a held study to an order."""

    accession_number: str


class AssignIn(BaseModel):
    """Assign a held study to a registered patient."""

    patient_id: str
    issuer: str = ""


class RejectIn(BaseModel):
    """Reject a held study (hidden from clinical use, kept)."""

    reason: str


class OwnerIn(BaseModel):
    """Name the user who works an exception."""

    owner: str = Field(max_length=64)


class CorrectIn(BaseModel):
    """Identifiers to set on a study (a field left out keeps its value)."""

    patient_id: str | None = Field(default=None, max_length=64)
    issuer: str | None = Field(default=None, max_length=64)
    accession_number: str | None = Field(default=None, max_length=64)

    def correction(self) -> Correction:
        """The correction the workflow applies."""
        return Correction(self.patient_id, self.issuer, self.accession_number)


class SplitIn(CorrectIn):
    """Move a series to another study: an existing one, or a new one (its identity: the
    source's, with the identifiers given here)."""

    series_instance_uid: str = Field(max_length=64)
    target_study_uid: str | None = Field(default=None, max_length=64)


class SplitOut(BaseModel):
    """The result of a split: its id (to undo it), and where the series went."""

    action_id: int
    state: str
    target_study_uid: str
    target_state: str


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
        patient=_patient(c.patient) if c.patient else None,
        reasons=[EvidenceOut(code=e.code, points=e.points, detail=e.detail) for e in c.evidence],
    )


class ActionOut(BaseModel):
    """The result of a reconciliation action: its id, to undo it, and the study's state."""

    action_id: int
    state: str


class AuditRecordOut(BaseModel):
    """One record of the audit trail, with its place in the hash chain."""

    id: int
    recorded_at: datetime
    hash: str
    event: dict[str, Any]


def create_app(
    queries: Queries,
    health: HealthCheck,
    accounts: Accounts,
    trail: AuditTrail,
    reconciliation: Reconciliation,
    jobs: Jobs,
    routing: Routing,
    prefetch: Prefetch,
    results: Results,
    *,
    reading: ReadingWorklist,
    exception_queue: ExceptionQueue,
) -> FastAPI:
    """The HTTP application over the read side of the workflow."""
    app = FastAPI(
        title="pacsflow",
        version=__version__,
        description=(
            "PACS workflow manager: studies, exceptions, orders and patients. "
            "Every /api route needs `Authorization: Bearer <token>` (`pacsflow tokens create`)."
        ),
    )
    app.add_middleware(_ChunkedBodyLimit)

    def who(request: Request, username: str) -> ActiveParticipant:
        host = request.client.host if request.client else ""
        return ActiveParticipant(user_id=username, is_requestor=True, network_access_point=host)

    def principal(request: Request) -> Principal:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("send Authorization: Bearer <token> (pacsflow tokens create)")
        try:
            return accounts.authenticate_token(token.strip())
        except Unauthenticated as exc:
            trail.record(
                user_authentication(
                    trail.source,
                    who(request, token.strip()[:15]),
                    datetime.now(UTC),
                    outcome=Outcome.MINOR_FAILURE,
                    description=str(exc),
                )
            )
            raise

    def requires(permission: Permission) -> Any:
        # A default, not Annotated: `principal` is local, and postponed annotations are
        # resolved in module globals.
        def check(request: Request, caller: Principal = Depends(principal)) -> Principal:  # noqa: B008
            participant = who(request, caller.username)
            allowed = caller.can(permission)
            if permission is Permission.READ_AUDIT:
                if not allowed:
                    trail.refused(participant)
            else:
                # Every read of patient data through the API is audited (110112 Query).
                trail.record(
                    audit_query(
                        trail.source,
                        participant,
                        datetime.now(UTC),
                        query_text=f"{request.method} {request.url.path}?{request.url.query}",
                        outcome=Outcome.SUCCESS if allowed else Outcome.MINOR_FAILURE,
                    )
                )
            if not allowed:
                raise Forbidden(f"{caller.username} lacks the permission {permission.value}")
            return caller

        return Depends(check)

    @app.middleware("http")
    async def _limit_body(request: Request, call_next: Any) -> Any:
        # Refuse oversized bodies before anything reads them (and before authentication).
        length = request.headers.get("content-length", "")
        if length and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return _problem(413, "Content Too Large", f"bodies over {MAX_BODY_BYTES} bytes")
        return await call_next(request)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # A chunked body (no Content-Length) past the limit is cut off while being read.
        if exc.status_code == 413:
            return _problem(413, "Content Too Large", f"bodies over {MAX_BODY_BYTES} bytes")
        return await http_exception_handler(request, exc)

    @app.exception_handler(PacsflowError)
    async def _on_error(_request: Request, exc: PacsflowError) -> JSONResponse:
        code = next((c for k, c in _PROBLEM_STATUS if isinstance(exc, k)), 500)
        response = _problem(code, type(exc).__name__, str(exc))
        if code == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.get("/healthz", tags=["operations"])
    def healthz() -> JSONResponse:
        """200 when every listener is up; the state of each either way."""
        listeners = health()
        is_up = all(state == "up" for state in listeners.values())
        body: dict[str, Any] = {"status": "ok" if is_up else "degraded", "listeners": listeners}
        return JSONResponse(body, status_code=200 if is_up else 503)

    @app.get("/api/studies", tags=["studies"], dependencies=[requires(Permission.READ_STUDIES)])
    def studies(
        patient_id: str = "",
        issuer: str = "",
        accession_number: str = "",
        include_held: bool = False,
        limit: Annotated[int, Query(ge=1, le=5000)] = 100,
    ) -> list[StudyOut]:
        """Studies, newest first; held (exception) studies only with include_held."""
        flt = StudyFilter(
            patient=PatientIdentifier(PatientId(patient_id), Issuer(issuer))
            if patient_id
            else None,
            accession_number=accession_number,
            is_published_only=not include_held,
            limit=limit,
        )
        return [_study(v) for v in queries.studies(flt)]

    @app.get(
        "/api/studies/{study_uid}",
        tags=["studies"],
        dependencies=[requires(Permission.READ_STUDIES)],
    )
    def study(study_uid: str) -> StudyOut:
        """One study, whatever its state."""
        view = queries.study(Uid(study_uid))
        if view is None:
            raise _NotFound(f"no study {study_uid}")
        return _study(view)

    @app.get(
        "/api/exceptions", tags=["exceptions"], dependencies=[requires(Permission.READ_EXCEPTIONS)]
    )
    def exceptions(limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> list[ExceptionOut]:
        """Open exceptions, overdue first, then oldest: reason, mismatch source, owner, age,
        target time for the reason and whether it is past it."""
        return [_exception(i) for i in exception_queue.open(limit)]

    @app.get(
        "/api/exceptions/report",
        tags=["exceptions"],
        dependencies=[requires(Permission.READ_EXCEPTIONS)],
        response_model=ExceptionReportOut,
        responses={200: {"content": {"text/csv": {}}}},
    )
    def exceptions_report(
        day: date | None = None,
        fmt: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
        tz: Annotated[str, Query(max_length=64)] = "UTC",
    ) -> Any:
        """Per reason and mismatch source: opened and resolved that day, actions (matched,
        assigned, rejected, undone, late-matched), median and p90 time to resolution, open and
        overdue at the end of the day (the day in tz, today by default)."""
        try:
            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise InvalidInput(f"unknown time zone {tz!r}", location="tz") from exc
        report = exception_queue.report(day, zone)
        if fmt == "csv":
            return Response(
                report.as_csv(),
                media_type="text/csv; charset=utf-8",
                headers={
                    "Content-Disposition": f'attachment; filename="exceptions-{report.day}.csv"'
                },
            )
        return ExceptionReportOut.model_validate(report.as_dict())

    @app.get("/api/exceptions/{exception_id}/candidates", tags=["exceptions"])
    def exception_candidates(
        exception_id: _Id,
        limit: Annotated[int, Query(ge=1, le=50)] = 10,
        caller: Principal = requires(Permission.RECONCILE),  # noqa: B008
    ) -> list[CandidateOut]:
        """Orders and patients the held study most likely belongs to, best first, each with
        its score (0-100) and the reasons (same or nearly the same patient ID, name, birth
        date, accession number; scheduled near the study date; modality)."""
        return [_candidate(c) for c in exception_queue.candidates(exception_id, limit)]

    @app.post("/api/exceptions/{exception_id}/assign-owner", tags=["exceptions"])
    def assign_owner(
        request: Request,
        exception_id: _Id,
        body: OwnerIn,
        caller: Principal = requires(Permission.RECONCILE),  # noqa: B008
    ) -> ActionOut:
        """Name the user who works the exception (undo restores the previous owner)."""
        done = reconciliation.assign_owner(exception_id, body.owner, who(request, caller.username))
        return ActionOut(action_id=done.action_id, state=done.state.value)

    @app.get("/api/orders", tags=["orders"], dependencies=[requires(Permission.READ_ORDERS)])
    def orders(
        status: OrderStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 100,
    ) -> list[OrderOut]:
        """Orders, newest first, optionally of one status."""
        return [_order(o) for o in queries.orders(status, limit)]

    @app.get(
        "/api/patients/{patient_id}",
        tags=["patients"],
        dependencies=[requires(Permission.READ_PATIENTS)],
    )
    def patient(patient_id: str, issuer: str = "") -> PatientDetailOut:
        """A registered patient and their published studies."""
        identifier = PatientIdentifier(PatientId(patient_id), Issuer(issuer))
        found = queries.patient_as_queried(identifier)
        if found is None:
            raise _NotFound(f"no patient {patient_id}" + (f" of issuer {issuer}" if issuer else ""))
        views = queries.studies(StudyFilter(patient=found.primary, limit=1000))
        return PatientDetailOut(patient=_patient(found), studies=[_study(v) for v in views])

    @app.get("/api/audit/events", tags=["audit"])
    def audit_events(
        request: Request,
        caller: Principal = requires(Permission.READ_AUDIT),  # noqa: B008
        patient_id: str | None = None,
        user: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[AuditRecordOut]:
        """Audit records by patient, user and time (auditors only; the search is audited)."""
        found = trail.search(
            AuditQuery(patient_id=patient_id, user=user, since=since, until=until, limit=limit),
            who(request, caller.username),
        )
        return [
            AuditRecordOut(
                id=r.id, recorded_at=r.recorded_at, hash=r.hash, event=to_dict(r.event())
            )
            for r in found
        ]

    @app.post("/api/exceptions/{exception_id}/match", tags=["exceptions"])
    def match(
        request: Request,
        exception_id: _Id,
        body: MatchIn,
        caller: Principal = requires(Permission.RECONCILE),  # noqa: B008
    ) -> ActionOut:
        """The held study belongs to this order: it is published under the order's patient."""
        done = reconciliation.match_to_order(
            exception_id, body.accession_number, who(request, caller.username)
        )
        return ActionOut(action_id=done.action_id, state=done.state.value)

    @app.post("/api/exceptions/{exception_id}/assign", tags=["exceptions"])
    def assign(
        request: Request,
        exception_id: _Id,
        body: AssignIn,
        caller: Principal = requires(Permission.RECONCILE),  # noqa: B008
    ) -> ActionOut:
        """The held study belongs to this registered patient: it is published."""
        identifier = PatientIdentifier(PatientId(body.patient_id), Issuer(body.issuer))
        done = reconciliation.assign_to_patient(
            exception_id, identifier, who(request, caller.username)
        )
        return ActionOut(action_id=done.action_id, state=done.state.value)

    @app.post("/api/exceptions/{exception_id}/reject", tags=["exceptions"])
    def reject(
        request: Request,
        exception_id: _Id,
        body: RejectIn,
        caller: Principal = requires(Permission.RECONCILE),  # noqa: B008
    ) -> ActionOut:
        """Hide the held study from clinical use for good (kept, with the reason)."""
        done = reconciliation.reject(exception_id, body.reason, who(request, caller.username))
        return ActionOut(action_id=done.action_id, state=done.state.value)

    @app.post("/api/exceptions/{exception_id}/correct", tags=["exceptions"])
    def correct(
        request: Request,
        exception_id: _Id,
        body: CorrectIn,
        caller: Principal = requires(Permission.RECONCILE),  # noqa: B008
    ) -> ActionOut:
        """Correct the held study's patient ID, issuer or accession number and match it again:
        published when it matches now, else held for the new reason."""
        done = reconciliation.correct(
            exception_id, body.correction(), who(request, caller.username)
        )
        return ActionOut(action_id=done.action_id, state=done.state.value)

    @app.post("/api/studies/{study_uid}/correct", tags=["studies"])
    def correct_study(
        request: Request,
        study_uid: Annotated[str, Path(max_length=64)],
        body: CorrectIn,
        caller: Principal = requires(Permission.RECONCILE),  # noqa: B008
    ) -> ActionOut:
        """Correct a study's identifiers, held or published, and match it again (a published
        study that no longer matches is held)."""
        done = reconciliation.correct_study(
            study_uid, body.correction(), who(request, caller.username)
        )
        return ActionOut(action_id=done.action_id, state=done.state.value)

    @app.post("/api/studies/{study_uid}/split", tags=["studies"])
    def split(
        request: Request,
        study_uid: Annotated[str, Path(max_length=64)],
        body: SplitIn,
        caller: Principal = requires(Permission.RECONCILE),  # noqa: B008
    ) -> SplitOut:
        """Move one series out of the study: to target_study_uid, or to a new study matched
        like a new arrival (with the identifiers given). Undo moves it back."""
        done = reconciliation.split(
            study_uid,
            body.series_instance_uid,
            who(request, caller.username),
            target_study_uid=body.target_study_uid,
            correction=body.correction(),
        )
        return SplitOut(
            action_id=done.action_id,
            state=done.state.value,
            target_study_uid=done.target_study_uid,
            target_state=done.target_state.value,
        )

    @app.post("/api/reconciliation/{action_id}/undo", tags=["exceptions"])
    def undo(
        request: Request,
        action_id: _Id,
        caller: Principal = requires(Permission.RECONCILE),  # noqa: B008
    ) -> ActionOut:
        """Restore the study and its exception exactly as they were before the action."""
        state = reconciliation.undo(action_id, who(request, caller.username))
        return ActionOut(action_id=action_id, state=state.value)

    @app.get("/api/jobs", tags=["jobs"], dependencies=[requires(Permission.READ_JOBS)])
    def list_jobs(
        state: JobState | None = None,
        kind: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 100,
    ) -> list[JobOut]:
        """Jobs, newest first; `state=dead` lists the dead letters with their last error."""
        return [_job(j) for j in jobs.list(state=state, kind=kind, limit=limit)]

    @app.get("/api/jobs/stats", tags=["jobs"], dependencies=[requires(Permission.READ_JOBS)])
    def job_stats() -> QueueStatsOut:
        """Queue depth by state and kind, age of the oldest pending job, failing destinations."""
        stats = jobs.stats()
        age = stats.oldest_pending_age
        return QueueStatsOut(
            depth=stats.depth,
            by_state=dict(stats.by_state),
            by_kind={k: dict(v) for k, v in stats.by_kind.items()},
            oldest_pending_seconds=age.total_seconds() if age is not None else None,
            failing_destinations=dict(stats.failing_destinations),
        )

    @app.get("/api/jobs/{job_id}", tags=["jobs"], dependencies=[requires(Permission.READ_JOBS)])
    def get_job(job_id: _Id) -> JobOut:
        """One job."""
        try:
            return _job(jobs.get(job_id))
        except UnknownJob as exc:
            raise _NotFound(str(exc)) from exc

    @app.post(
        "/api/jobs/replay-dead", tags=["jobs"], dependencies=[requires(Permission.MANAGE_JOBS)]
    )
    def replay_dead(kind: Annotated[str | None, Query(max_length=64)] = None) -> ReplayedOut:
        """Replay every dead-lettered job (of one kind) with fresh attempts."""
        return ReplayedOut(replayed=jobs.replay_dead(kind))

    @app.post(
        "/api/jobs/{job_id}/replay", tags=["jobs"], dependencies=[requires(Permission.MANAGE_JOBS)]
    )
    def replay_job(job_id: _Id) -> JobOut:
        """Run a dead-lettered job again with fresh attempts (409 when it is not dead)."""
        try:
            return _job(jobs.replay(job_id))
        except UnknownJob as exc:
            raise _NotFound(str(exc)) from exc

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

    @app.get("/api/routing/versions", tags=["routing"])
    def routing_versions(
        caller: Principal = requires(Permission.MANAGE_CONFIG),  # noqa: B008
    ) -> list[VersionOut]:
        """Every version of the routing rules, newest first, the active one marked."""
        return [_version_out(v) for v in routing.versions()]

    @app.post("/api/routing/versions", tags=["routing"], status_code=201)
    def routing_save(
        request: Request,
        body: RulesIn,
        caller: Principal = requires(Permission.MANAGE_CONFIG),  # noqa: B008
    ) -> VersionOut:
        """Save the rules as a new version (checked first: 400 says what is wrong)."""
        number = routing.save(
            body.text, who(request, caller.username), body.comment, activate=body.activate
        )
        return next(_version_out(v) for v in routing.versions() if v.version.version == number)

    @app.get("/api/routing/versions/{version}", tags=["routing"])
    def routing_version(
        version: _Id,
        caller: Principal = requires(Permission.MANAGE_CONFIG),  # noqa: B008
    ) -> VersionOut:
        """One version of the routing rules."""
        for view in routing.versions():
            if view.version.version == version:
                return _version_out(view)
        raise _NotFound(f"no routing rules version {version}")

    @app.post("/api/routing/versions/{version}/activate", tags=["routing"])
    def routing_activate(
        request: Request,
        version: _Id,
        caller: Principal = requires(Permission.MANAGE_CONFIG),  # noqa: B008
    ) -> VersionOut:
        """Route from now on by this version."""
        try:
            routing.activate(version, who(request, caller.username))
        except UnknownVersion as exc:
            raise _NotFound(str(exc)) from exc
        return routing_version(version, caller)

    @app.post("/api/routing/rollback", tags=["routing"])
    def routing_rollback(
        request: Request,
        caller: Principal = requires(Permission.MANAGE_CONFIG),  # noqa: B008
    ) -> VersionOut:
        """Activate the version that was active before the current one."""
        return routing_version(routing.rollback(who(request, caller.username)), caller)

    @app.get("/api/routing/diff", tags=["routing"])
    def routing_diff(
        old: Annotated[int, Query(ge=1, le=2**63 - 1)],
        new: Annotated[int, Query(ge=1, le=2**63 - 1)],
        caller: Principal = requires(Permission.MANAGE_CONFIG),  # noqa: B008
    ) -> dict[str, str]:
        """A unified diff between two versions (canonical form)."""
        try:
            return {"diff": routing.diff(old, new)}
        except UnknownVersion as exc:
            raise _NotFound(str(exc)) from exc

    @app.post("/api/routing/dry-run", tags=["routing"])
    def routing_dry_run(
        body: DryRunIn,
        caller: Principal = requires(Permission.MANAGE_CONFIG),  # noqa: B008
    ) -> list[RouteDifferenceOut]:
        """Where the active rules and the candidate send each study of the period; sends nothing."""
        found = routing.dry_run(body.text, body.since, body.until)
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

    @app.get(
        "/api/studies/{study_uid}/forwards",
        tags=["studies"],
        dependencies=[requires(Permission.READ_STUDIES)],
    )
    def study_forwards(study_uid: Annotated[str, Path(max_length=64)]) -> list[ForwardOut]:
        """Where the study's instances were routed and how each transfer ended."""
        return [
            ForwardOut(sop_instance_uid=s, destination=d, state=st, last_error=e)
            for s, d, st, e in routing.forwards(Uid(study_uid))
        ]

    @app.get("/api/priors", tags=["studies"], dependencies=[requires(Permission.READ_STUDIES)])
    def priors(
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
            for p in prefetch.priors(key, limit)
        ]

    @app.get("/api/alerts", tags=["jobs"], dependencies=[requires(Permission.READ_JOBS)])
    def alerts(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[AlertOut]:
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
            for a in routing.alerts(limit)
        ]

    @app.post("/api/reports", tags=["reports"], status_code=201)
    def post_report(
        body: ReportIn,
        caller: Principal = requires(Permission.WRITE_REPORTS),  # noqa: B008
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
        return _report(results.receive(report, f"api:{caller.username}"))

    @app.get("/api/reports", tags=["reports"], dependencies=[requires(Permission.READ_STUDIES)])
    def list_reports(
        unattached: bool = False, limit: Annotated[int, Query(ge=1, le=5000)] = 100
    ) -> list[ReportOut]:
        """Report versions, newest first; unattached=true: those still waiting for a study."""
        return [_report(r) for r in results.reports(unattached_only=unattached, limit=limit)]

    @app.get(
        "/api/studies/{study_uid}/reports",
        tags=["reports"],
        dependencies=[requires(Permission.READ_STUDIES)],
    )
    def study_reports(study_uid: Annotated[str, Path(max_length=64)]) -> StudyReportsOut:
        """A study's report status (unread, in_progress, preliminary, final, corrected)."""
        uid = Uid(study_uid)
        return StudyReportsOut(
            study_instance_uid=uid,
            report_status=results.status_of(uid).value,
            versions=[_report(r) for r in results.reports_of(uid)],
        )

    @app.get(
        "/api/results/deliveries", tags=["reports"], dependencies=[requires(Permission.READ_JOBS)]
    )
    def delivery_stats() -> list[DeliveryStatsOut]:
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
            for d in results.delivery_stats()
        ]

    @app.get(
        "/api/reading-worklist",
        tags=["reading"],
        dependencies=[requires(Permission.READ_STUDIES)],
    )
    def reading_worklist(
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
        return [_reading_item(e) for e in reading.entries(flt, site=site, limit=limit)]

    def _claim_out(claim: Claim) -> ClaimOut:
        return ClaimOut(
            study_instance_uid=claim.study_instance_uid,
            claimed_by=claim.reader,
            claimed_at=claim.claimed_at,
            claim_expires_at=claim.expires_at,
        )

    @app.post("/api/reading-worklist/{study_uid}/claim", tags=["reading"])
    def claim_study(
        study_uid: Annotated[str, Path(max_length=64)],
        caller: Principal = requires(Permission.CLAIM_READING),  # noqa: B008
    ) -> ClaimOut:
        """Claim a study for reading (again: extend the claim); 409 names who holds it."""
        try:
            return _claim_out(reading.claim(Uid(study_uid), caller.username))
        except UnknownStudy as exc:
            raise _NotFound(str(exc)) from exc

    @app.post("/api/reading-worklist/{study_uid}/release", tags=["reading"], status_code=204)
    def release_study(
        study_uid: Annotated[str, Path(max_length=64)],
        caller: Principal = requires(Permission.CLAIM_READING),  # noqa: B008
    ) -> None:
        """Give a claimed study back (only its holder may: 409 otherwise)."""
        try:
            reading.release(Uid(study_uid), caller.username)
        except UnknownStudy as exc:
            raise _NotFound(str(exc)) from exc

    @app.exception_handler(StudyClaimed)
    async def _on_claimed(_request: Request, exc: StudyClaimed) -> JSONResponse:
        # The problem document of every 409, plus who holds the study and until when.
        body = {
            "type": "about:blank",
            "title": "StudyClaimed",
            "status": 409,
            "detail": str(exc),
            "claimed_by": exc.claim.reader,
            "claim_expires_at": exc.claim.expires_at.isoformat(),
        }
        return JSONResponse(body, status_code=409, media_type="application/problem+json")

    @app.exception_handler(_NotFound)
    async def _on_not_found(_request: Request, exc: _NotFound) -> JSONResponse:
        return _problem(404, "Not Found", str(exc))

    return app


class _NotFound(Exception):
    """A resource the client asked for does not exist."""


__all__ = ["HealthCheck", "create_app"]
