"""The one builder of the workflow services: Settings + adapters + a Clock -> use cases.

`Pacsflow` (app.py), its job worker and every CLI command take their services from one
`Services`. Each service is built on first use and then shared, so a node wires routing,
prefetch and results once for ingest, intake, reconciliation and the job handlers, and a
CLI command builds only what it calls.
"""

from __future__ import annotations

import getpass
import ssl
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from functools import cached_property

import sqlalchemy as sa

from pacsflow.adapters.blobs import open_blob_store
from pacsflow.adapters.blobs.files import FileBlobStore
from pacsflow.adapters.db import SqlUnitOfWorkFactory, make_engine, upgrade
from pacsflow.adapters.dicom.archive import DicomArchives
from pacsflow.adapters.dicom.datasets import is_dicom_keyword
from pacsflow.adapters.dicom.sender import DicomSender, read_attributes
from pacsflow.adapters.dicomweb import StowDestination, StowSender
from pacsflow.adapters.hl7.results import Hl7Subscriber, MllpResultSender
from pacsflow.adapters.routing_yaml import YamlRuleText
from pacsflow.adapters.security import Argon2Hasher
from pacsflow.adapters.syslog import SyslogTlsSender, client_tls_context
from pacsflow.config import DicomwebDestination, ResultSubscriber, Settings, host_zone
from pacsflow.domain.audit import AuditSource
from pacsflow.domain.jobs import RetryPolicy
from pacsflow.domain.matching import ExceptionReason
from pacsflow.domain.orders import StationRule
from pacsflow.domain.prefetch import RelevanceRule
from pacsflow.domain.reading import ReadingTargets
from pacsflow.domain.reports import status_from_code
from pacsflow.domain.studies import InstanceRecord
from pacsflow.domain.uids import Uid
from pacsflow.worker import Handler, Worker
from pacsflow.workflow.accounts import Accounts
from pacsflow.workflow.audit import AuditTrail
from pacsflow.workflow.events import EventBus
from pacsflow.workflow.exception_queue import ExceptionQueue
from pacsflow.workflow.ingest import Ingest
from pacsflow.workflow.intake import Intake
from pacsflow.workflow.jobs import Jobs
from pacsflow.workflow.ports.clock import Clock
from pacsflow.workflow.prefetch import PREFETCH_JOB, RETRIEVE_JOB, Prefetch
from pacsflow.workflow.procedure_steps import ProcedureSteps
from pacsflow.workflow.queries import MergedIdQueries, Queries
from pacsflow.workflow.reading import ReadingWorklist
from pacsflow.workflow.reconciliation import Reconciliation
from pacsflow.workflow.results import DELIVER_RESULT_JOB, Results, Subscriber
from pacsflow.workflow.routing import FORWARD_JOB, ROUTE_INSTANCE_JOB, ROUTE_STUDY_JOB, Routing


class SystemClock:
    """The wall clock, in UTC, and the site time zone (default: the host's)."""

    def __init__(self, zone: tzinfo | None = None) -> None:
        self.zone: tzinfo = zone or host_zone()

    def now(self) -> datetime:
        """The current time."""
        return datetime.now(UTC)


def prepare_database(settings: Settings) -> str:
    """Create the data directory and bring the database schema up to date; the URL."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.effective_database_url
    upgrade(url)
    return url


def retry_policy(settings: Settings) -> RetryPolicy:
    """The job retry policy the settings ask for."""
    base = timedelta(seconds=settings.job_retry_base_seconds)
    return RetryPolicy(
        max_attempts=settings.job_max_attempts,
        base=base,
        cap=max(base, timedelta(seconds=settings.job_retry_max_seconds)),
    )


def exception_targets(settings: Settings) -> dict[ExceptionReason, timedelta]:
    """The configured time targets per exception reason (the others keep their default)."""
    return {reason: timedelta(minutes=m) for reason, m in settings.exception_targets.items()}


class Services:
    """The workflow services of one node or one command, over the configured database.

    `wake` is called when a job is enqueued (a node passes its worker's wake-up).
    """

    def __init__(
        self,
        settings: Settings,
        clock: Clock | None = None,
        *,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock(settings.site_zone)
        self._wake = wake

    # -- adapters -------------------------------------------------------------------------

    @cached_property
    def engine(self) -> sa.Engine:
        """The database engine (the schema is prepare_database's business)."""
        return make_engine(self.settings.effective_database_url)

    @cached_property
    def uow(self) -> SqlUnitOfWorkFactory:
        """Units of work over the database."""
        return SqlUnitOfWorkFactory(self.engine)

    @cached_property
    def blobs(self) -> FileBlobStore:
        """The blob store holding the received objects."""
        return open_blob_store(self.settings.effective_storage_url)

    @cached_property
    def source(self) -> AuditSource:
        """This node as the source of its audit records."""
        return AuditSource(self.settings.ae_title)

    @cached_property
    def syslog(self) -> SyslogTlsSender | None:
        """The audit record forwarder to a syslog server (TLS), when one is configured."""
        s = self.settings
        if not s.audit_syslog_host:
            return None
        return SyslogTlsSender(
            s.audit_syslog_host,
            s.audit_syslog_port,
            client_tls_context(
                s.audit_syslog_ca_file, s.audit_syslog_cert_file, s.audit_syslog_key_file
            ),
        )

    # -- workflow services ----------------------------------------------------------------

    @cached_property
    def audit(self) -> AuditTrail:
        """The audit trail (and its forwarding to syslog)."""
        return AuditTrail(self.uow, self.clock, self.source, self.syslog)

    @cached_property
    def accounts(self) -> Accounts:
        """Users, roles and API tokens."""
        return Accounts(
            self.uow,
            Argon2Hasher(fast_for_tests=self.settings.fast_hashing_for_tests),
            self.clock,
            self.source,
            operator=f"{getpass.getuser()}@cli",
        )

    @cached_property
    def queries(self) -> Queries:
        """What modalities, workstations and people ask about the index."""
        return Queries(self.uow, self.blobs, MergedIdQueries(self.settings.merged_id_queries))

    @cached_property
    def exception_queue(self) -> ExceptionQueue:
        """The exceptions queue: targets, candidates, daily report."""
        return ExceptionQueue(self.uow, self.clock, exception_targets(self.settings))

    @cached_property
    def reading(self) -> ReadingWorklist:
        """The reading worklist and its claims."""
        s = self.settings
        return ReadingWorklist(
            self.uow,
            self.clock,
            ReadingTargets.from_minutes(s.reading_targets),
            timedelta(minutes=s.reading_claim_minutes),
            site=s.site,
        )

    @cached_property
    def routing(self) -> Routing:
        """Routing: rule versions, dry runs and the forwarding job handlers."""
        s = self.settings
        local_file = self.queries.local_file

        def attributes(instance: InstanceRecord) -> dict[str, tuple[str, ...]]:
            path = local_file(instance)
            return read_attributes(path) if path is not None else {}

        senders = _Senders(
            DicomSender(s.ae_title, s.peer_address, local_file, self.queries.study),
            StowSender({d.name: _stow(d) for d in s.dicomweb_destinations}, local_file),
        )
        return Routing(
            self.uow,
            self.clock,
            attributes,
            senders,
            rule_text=YamlRuleText(),
            is_destination=lambda name: s.peer(name) is not None or senders.stow.knows(name),
            audit_source=self.source,
            called_ae=s.ae_title,
            site=s.site,
            stable_after=timedelta(seconds=s.routing_stable_seconds),
            is_keyword=is_dicom_keyword,
        )

    @cached_property
    def prefetch(self) -> Prefetch:
        """Prefetch: priors of a patient searched and retrieved through the job queue."""
        s = self.settings
        return Prefetch(
            self.uow,
            self.clock,
            DicomArchives(
                s.ae_title,
                s.peer_address,
                with_issuer=lambda ae: (peer := s.peer(ae)) is None or peer.query_with_issuer,
            ),
            s.prefetch_archives,
            [
                RelevanceRule(**r.model_dump() | {"modalities": tuple(r.modalities)})
                for r in s.prefetch_rules
            ],
            body_parts=s.prefetch_body_parts,
        )

    @cached_property
    def results(self) -> Results:
        """The result rail: reports kept and attached, deliveries to the HL7 subscribers."""
        s = self.settings
        return Results(
            self.uow,
            self.clock,
            [_subscriber(r) for r in s.result_subscribers],
            MllpResultSender(
                {r.name: _hl7_subscriber(s, r) for r in s.result_subscribers},
                app_name=s.hl7_application,
                facility=s.hl7_facility,
                clock=self.clock.now,
            ),
        )

    @cached_property
    def events(self) -> EventBus:
        """Domain events: what ingest, intake, MPPS and reconciliation record starts the work
        it causes (routing, prefetch, results) in the same transaction."""
        events = EventBus()
        self.routing.subscribe_to(events)
        self.prefetch.subscribe_to(events)
        self.results.subscribe_to(events)
        return events

    @cached_property
    def ingest(self) -> Ingest:
        """Ingest: received objects stored, indexed, matched; routing, prefetch, results after."""
        return Ingest(
            self.uow,
            self.blobs,
            self.clock,
            events=self.events,
            on_duplicate=[self.routing.on_duplicate],
            audit=self.audit,
        )

    @cached_property
    def intake(self) -> Intake:
        """Intake: the HL7 orders, ADT and results applied to the index."""
        s = self.settings
        rules = tuple(
            StationRule(
                station_ae=m.station_ae,
                modality=m.modality,
                procedure_code=m.procedure_code,
                station_name=m.station_name,
            )
            for m in s.station_mappings
        )
        return Intake(
            self.uow,
            self.clock,
            rules,
            audit_source=self.source,
            report_sink=self.results.record,
            events=self.events,
        )

    @cached_property
    def steps(self) -> ProcedureSteps:
        """Performed procedure steps (MPPS); a completed one may start routing."""
        return ProcedureSteps(self.uow, self.clock, self.events)

    @cached_property
    def jobs(self) -> Jobs:
        """The durable job queue: enqueue, list, replay."""
        return Jobs(self.uow, self.clock, wake=self._wake)

    @cached_property
    def reconciliation(self) -> Reconciliation:
        """Reconciliation actions; publishing a held study starts what waits for it.

        Routing, prefetch and waiting reports are enqueued in the action's transaction for
        the nodes' workers to run.
        """
        return Reconciliation(self.uow, self.clock, self.source, self.events)

    # -- the job worker -------------------------------------------------------------------

    def job_handlers(self) -> dict[str, Handler]:
        """The workflow's job handlers by kind; every feature causing durable work adds its own."""
        return {
            ROUTE_INSTANCE_JOB: self.routing.route_instance,
            ROUTE_STUDY_JOB: self.routing.route_study,
            FORWARD_JOB: self.routing.forward,
            PREFETCH_JOB: self.prefetch.search,
            RETRIEVE_JOB: self.prefetch.retrieve,
            DELIVER_RESULT_JOB: self.results.deliver,
        }

    def worker(self, handlers: Mapping[str, Handler]) -> Worker:
        """A job worker running these handlers with the configured threads, lease and limits."""
        s = self.settings
        return Worker(
            self.uow,
            self.clock,
            handlers,
            threads=s.job_workers,
            lease=timedelta(seconds=s.job_lease_seconds),
            poll_seconds=s.job_poll_seconds,
            policy=retry_policy(s),
            destination_limits={
                **{p.ae_title: p.max_concurrent_jobs for p in s.peers},
                **{d.name: d.max_concurrent_jobs for d in s.dicomweb_destinations},
                **{r.name: r.max_concurrent_jobs for r in s.result_subscribers},
            },
        )


def _hl7_subscriber(settings: Settings, r: ResultSubscriber) -> Hl7Subscriber:
    context = None
    if r.tls:
        context = ssl.create_default_context(
            cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None
        )
        if settings.tls_cert_file and settings.tls_key_file:
            context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return Hl7Subscriber(
        name=r.name,
        host=r.host,
        port=r.port,
        version=r.version,
        receiving_application=r.receiving_application,
        receiving_facility=r.receiving_facility,
        timeout=r.timeout_seconds,
        ssl_context=context,
    )


def _stow(d: DicomwebDestination) -> StowDestination:
    verify: ssl.SSLContext | bool = d.verify_tls
    if d.ca_file is not None:
        verify = ssl.create_default_context(cafile=str(d.ca_file))
    return StowDestination(
        name=d.name,
        base_url=d.url,
        bearer_token=d.bearer_token,
        username=d.username,
        password=d.password,
        verify=verify,
    )


def _subscriber(r: ResultSubscriber) -> Subscriber:
    return Subscriber(
        name=r.name,
        wants_reports="report" in r.events,
        wants_images_available="images_available" in r.events,
        statuses=frozenset(status_from_code(c) for c in r.statuses),
        target_seconds=r.target_seconds,
    )


class _Senders:
    """Routing destinations by name: DICOMweb STOW-RS endpoints, else DICOM peers."""

    def __init__(self, dicom: DicomSender, stow: StowSender) -> None:
        self.dicom = dicom
        self.stow = stow

    def send(self, destination: str, instances: Sequence[InstanceRecord]) -> Mapping[Uid, str]:
        """Send to whichever kind of destination the name is."""
        sender = self.stow if self.stow.knows(destination) else self.dicom
        return sender.send(destination, instances)


__all__ = [
    "Services",
    "SystemClock",
    "exception_targets",
    "prepare_database",
    "retry_policy",
]
