"""Composition root: Settings -> adapters -> workflow; starts and stops the listeners."""

from __future__ import annotations

import getpass
import logging
import socket
import ssl
import tempfile
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from pacsflow.adapters.blobs import open_blob_store
from pacsflow.adapters.db import SqlUnitOfWorkFactory, make_engine, upgrade
from pacsflow.adapters.dicom.archive import DicomArchives
from pacsflow.adapters.dicom.datasets import is_dicom_keyword
from pacsflow.adapters.dicom.sender import DicomSender, read_attributes
from pacsflow.adapters.dicom.server import Destination, DicomServer
from pacsflow.adapters.dicomweb import StowDestination, StowSender
from pacsflow.adapters.hl7 import Hl7Service, MllpServer, SenderFieldMaps
from pacsflow.adapters.hl7.results import Hl7Subscriber, MllpResultSender
from pacsflow.adapters.http import HttpServer, create_app
from pacsflow.adapters.security import Argon2Hasher, server_context
from pacsflow.adapters.syslog import SyslogTlsSender, client_tls_context
from pacsflow.config import DicomwebDestination, ResultSubscriber, Settings
from pacsflow.domain.access import PeerRights
from pacsflow.domain.audit import ActiveParticipant, AuditSource, application_activity
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
from pacsflow.workflow.commitment import STORAGE_COMMITMENT_JOB, StorageCommitment
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
from pacsflow.workflow.routing import (
    FORWARD_JOB,
    ROUTE_INSTANCE_JOB,
    ROUTE_STUDY_JOB,
    Routing,
)
from pacsflow.workflow.settings_audit import record_settings

log = logging.getLogger(__name__)


class SystemClock:
    """The wall clock, in UTC."""

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


def jobs(settings: Settings, engine: sa.Engine | None = None, clock: Clock | None = None) -> Jobs:
    """The job queue service over the configured database (for the CLI)."""
    engine = engine or make_engine(settings.effective_database_url)
    return Jobs(SqlUnitOfWorkFactory(engine), clock or SystemClock())


def exception_targets(settings: Settings) -> dict[ExceptionReason, timedelta]:
    """The configured time targets per exception reason (the others keep their default)."""
    return {reason: timedelta(minutes=m) for reason, m in settings.exception_targets.items()}


def reconciliation(
    settings: Settings, engine: sa.Engine | None = None, clock: Clock | None = None
) -> Reconciliation:
    """The reconciliation actions over the configured database (for the CLI).

    Publishing a held study starts what waits for it, as on a node: routing, prefetch and
    waiting reports, enqueued in the action's transaction for the nodes' workers to run.
    """
    engine = engine or make_engine(settings.effective_database_url)
    clock = clock or SystemClock()
    return Reconciliation(
        SqlUnitOfWorkFactory(engine),
        clock,
        AuditSource(settings.ae_title),
        on_published=[
            routing(settings, engine, clock).on_published,
            prefetch(settings, engine, clock).on_published,
            results(settings, engine, clock).on_published,
        ],
    )


def exception_queue(
    settings: Settings, engine: sa.Engine | None = None, clock: Clock | None = None
) -> ExceptionQueue:
    """The exceptions queue (targets, candidates, daily report) over the configured database."""
    engine = engine or make_engine(settings.effective_database_url)
    return ExceptionQueue(
        SqlUnitOfWorkFactory(engine), clock or SystemClock(), exception_targets(settings)
    )


def accounts(
    settings: Settings, engine: sa.Engine | None = None, clock: Clock | None = None
) -> Accounts:
    """The accounts service over the configured database."""
    engine = engine or make_engine(settings.effective_database_url)
    return Accounts(
        SqlUnitOfWorkFactory(engine),
        Argon2Hasher(fast_for_tests=settings.fast_hashing_for_tests),
        clock or SystemClock(),
        AuditSource(settings.ae_title),
        operator=f"{getpass.getuser()}@cli",
    )


def routing(
    settings: Settings, engine: sa.Engine | None = None, clock: Clock | None = None
) -> Routing:
    """The routing service: rule versions, dry runs and the forwarding job handlers."""
    engine = engine or make_engine(settings.effective_database_url)
    uow = SqlUnitOfWorkFactory(engine)
    queries = Queries(uow, open_blob_store(settings.effective_storage_url))
    local_file = queries.local_file

    def attributes(instance: InstanceRecord) -> dict[str, tuple[str, ...]]:
        path = local_file(instance)
        return read_attributes(path) if path is not None else {}

    senders = _Senders(
        DicomSender(settings.ae_title, settings.peer_address, local_file, queries.study),
        StowSender({d.name: _stow(d) for d in settings.dicomweb_destinations}, local_file),
    )
    return Routing(
        uow,
        clock or SystemClock(),
        attributes,
        senders,
        is_destination=lambda name: settings.peer(name) is not None or senders.stow.knows(name),
        audit_source=AuditSource(settings.ae_title),
        called_ae=settings.ae_title,
        site=settings.site,
        stable_after=timedelta(seconds=settings.routing_stable_seconds),
        is_keyword=is_dicom_keyword,
    )


def prefetch(
    settings: Settings, engine: sa.Engine | None = None, clock: Clock | None = None
) -> Prefetch:
    """The prefetch service: priors of a patient searched and retrieved through the job queue."""
    engine = engine or make_engine(settings.effective_database_url)
    return Prefetch(
        SqlUnitOfWorkFactory(engine),
        clock or SystemClock(),
        DicomArchives(
            settings.ae_title,
            settings.peer_address,
            with_issuer=lambda ae: (peer := settings.peer(ae)) is None or peer.query_with_issuer,
        ),
        settings.prefetch_archives,
        [
            RelevanceRule(**r.model_dump() | {"modalities": tuple(r.modalities)})
            for r in settings.prefetch_rules
        ],
        body_parts=settings.prefetch_body_parts,
    )


def results(
    settings: Settings, engine: sa.Engine | None = None, clock: Clock | None = None
) -> Results:
    """The result rail: reports kept and attached, deliveries to the HL7 subscribers."""
    engine = engine or make_engine(settings.effective_database_url)
    clock = clock or SystemClock()
    return Results(
        SqlUnitOfWorkFactory(engine),
        clock,
        [_subscriber(r) for r in settings.result_subscribers],
        MllpResultSender(
            {r.name: _hl7_subscriber(settings, r) for r in settings.result_subscribers},
            app_name=settings.hl7_application,
            facility=settings.hl7_facility,
            clock=clock.now,
        ),
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


_SECRET_KEYS = frozenset({"password", "bearer_token", "secret", "token"})


def redacted_settings(settings: Settings) -> dict[str, Any]:
    """The settings as JSON values, with passwords and tokens (also in URLs) masked."""

    def scrub(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: scrub(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [scrub(v, key) for v in value]
        if isinstance(value, str) and value and key in _SECRET_KEYS:
            return "***"
        if isinstance(value, str) and "://" in value and "@" in value:
            scheme, _, rest = value.partition("://")
            credentials, _, host = rest.rpartition("@")
            user = credentials.split(":", 1)[0]
            return f"{scheme}://{user}:***@{host}" if ":" in credentials else value
        return value

    dumped: dict[str, Any] = scrub(settings.model_dump(mode="json"))
    return dumped


class _Senders:
    """Routing destinations by name: DICOMweb STOW-RS endpoints, else DICOM peers."""

    def __init__(self, dicom: DicomSender, stow: StowSender) -> None:
        self.dicom = dicom
        self.stow = stow

    def send(self, destination: str, instances: Sequence[InstanceRecord]) -> Mapping[Uid, str]:
        """Send to whichever kind of destination the name is."""
        sender = self.stow if self.stow.knows(destination) else self.dicom
        return sender.send(destination, instances)


class Pacsflow:
    """One pacsflow node: DICOM, HL7 MLLP and HTTP listeners over one database and blob store."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        url = prepare_database(settings)
        staging = settings.data_dir / "tmp"
        staging.mkdir(parents=True, exist_ok=True)
        # pynetdicom streams each C-STORE into a temporary file; keeping it on the data
        # directory's filesystem makes the move into the blob store an atomic rename.
        tempfile.tempdir = str(staging)
        self.engine = make_engine(url)
        uow = SqlUnitOfWorkFactory(self.engine)
        self.clock = clock = clock or SystemClock()
        blobs = open_blob_store(settings.effective_storage_url)
        rules = tuple(
            StationRule(
                station_ae=m.station_ae,
                modality=m.modality,
                procedure_code=m.procedure_code,
                station_name=m.station_name,
            )
            for m in settings.station_mappings
        )
        self.accounts = accounts(settings, self.engine, clock)
        source = AuditSource(settings.ae_title)
        self.syslog = (
            SyslogTlsSender(
                settings.audit_syslog_host,
                settings.audit_syslog_port,
                client_tls_context(
                    settings.audit_syslog_ca_file,
                    settings.audit_syslog_cert_file,
                    settings.audit_syslog_key_file,
                ),
            )
            if settings.audit_syslog_host
            else None
        )
        self.audit = AuditTrail(uow, clock, source, self.syslog)
        self.queries = Queries(uow, blobs, MergedIdQueries(settings.merged_id_queries))
        self.exception_queue = exception_queue(settings, self.engine, clock)
        self.reading = ReadingWorklist(
            uow,
            clock,
            ReadingTargets.from_minutes(settings.reading_targets),
            timedelta(minutes=settings.reading_claim_minutes),
            site=settings.site,
        )
        self.routing = routing(settings, self.engine, clock)
        self.prefetch = prefetch(settings, self.engine, clock)
        self.results = results(settings, self.engine, clock)
        # What publishing a held study (reconciliation, late match) starts, in its transaction.
        self._on_published = [
            self.routing.on_published,
            self.prefetch.on_published,
            self.results.on_published,
        ]
        self.ingest = Ingest(
            uow,
            blobs,
            clock,
            after_store=[self.routing.on_stored, self.prefetch.on_stored, self.results.on_stored],
            on_duplicate=[self.routing.on_duplicate],
            audit=self.audit,
        )
        self.intake = Intake(
            uow,
            clock,
            rules,
            audit_source=source,
            after_order=[self.prefetch.on_order],
            report_sink=self.results.record,
            on_published=self._on_published,
        )
        self.steps = ProcedureSteps(uow, clock, on_completed=[self.routing.on_procedure_completed])
        # Job handlers by kind; every feature that causes durable work registers its own.
        self.handlers: dict[str, Handler] = {}
        self.jobs = Jobs(uow, clock, wake=self._wake_worker)
        self.commitment = StorageCommitment(
            uow,
            self.jobs.enqueue,
            DicomSender(settings.ae_title, settings.peer_address, self.queries.local_file),
        )
        self.dicom = DicomServer(
            ae_title=settings.ae_title,
            host=settings.host,
            port=settings.dicom_port,
            ingest=self.ingest,
            steps=self.steps,
            queries=self.queries,
            peers=self._destination,
            audit=self.audit,
            rights=self._rights,
            is_open=settings.dicom_open,
            strict_titles=(
                frozenset(p.ae_title for p in settings.peers) if settings.dicom_strict else None
            ),
            ssl_context=self._tls("dicom"),
            max_pdu=settings.dicom_max_pdu,
            max_associations=settings.dicom_max_associations,
            commitment=self.commitment,
            fast_storage=settings.dicom_fast_storage,
        )
        self.handlers[STORAGE_COMMITMENT_JOB] = self.commitment.report
        self.handlers[ROUTE_INSTANCE_JOB] = self.routing.route_instance
        self.handlers[ROUTE_STUDY_JOB] = self.routing.route_study
        self.handlers[FORWARD_JOB] = self.routing.forward
        self.handlers[PREFETCH_JOB] = self.prefetch.search
        self.handlers[RETRIEVE_JOB] = self.prefetch.retrieve
        self.handlers[DELIVER_RESULT_JOB] = self.results.deliver
        service = Hl7Service(
            self.intake,
            SenderFieldMaps.from_settings(settings.hl7_fields),
            app_name=settings.hl7_application,
            facility=settings.hl7_facility,
            allowed_senders=frozenset(settings.hl7_allowed_senders),
        )
        self.hl7 = MllpServer(
            settings.host, settings.hl7_port, service.handle, ssl_context=self._tls("hl7")
        )
        self.reconciliation = Reconciliation(uow, clock, source, on_published=self._on_published)
        self.http = HttpServer(
            create_app(
                self.queries,
                self.health,
                self.accounts,
                self.audit,
                self.reconciliation,
                self.jobs,
                self.routing,
                self.prefetch,
                self.results,
                reading=self.reading,
                exception_queue=self.exception_queue,
            ),
            settings.host,
            settings.http_port,
            ssl_context=self._tls("http"),
        )
        self.worker = Worker(
            uow,
            clock,
            self.handlers,
            threads=settings.job_workers,
            lease=timedelta(seconds=settings.job_lease_seconds),
            poll_seconds=settings.job_poll_seconds,
            policy=retry_policy(settings),
            destination_limits={
                **{p.ae_title: p.max_concurrent_jobs for p in settings.peers},
                **{d.name: d.max_concurrent_jobs for d in settings.dicomweb_destinations},
                **{r.name: r.max_concurrent_jobs for r in settings.result_subscribers},
            },
        )
        self._stopped = threading.Event()

    def _wake_worker(self) -> None:
        worker: Worker | None = getattr(self, "worker", None)
        if worker is not None:
            worker.wake()

    def _tls(self, listener: str) -> ssl.SSLContext | None:
        s = self.settings
        if not s.tls_for(listener):
            return None
        if s.tls_key_file is None or s.tls_cert_file is None:
            raise ValueError("TLS needs both tls_cert_file and tls_key_file")
        return server_context(
            s.tls_cert_file, s.tls_key_file, s.tls_ca_file, require_client=s.tls_require_client_cert
        )

    def _destination(self, ae_title: str) -> Destination | None:
        peer = self.settings.peer(ae_title)
        return Destination(peer.host, peer.port) if peer else None

    def _rights(self, ae_title: str) -> PeerRights | None:
        peer = self.settings.peer(ae_title)
        if peer is None:
            return None
        return PeerRights(
            can_store=peer.can_store,
            can_query=peer.can_query,
            can_retrieve=peer.can_retrieve,
            move_destinations=frozenset(peer.move_destinations),
        )

    def health(self) -> dict[str, str]:
        """The state of each listener."""
        return {
            "dicom": "up" if self.dicom.is_running else "down",
            "hl7": "up" if self.hl7.is_serving else "down",
            "http": "up" if self.http.is_running else "down",
        }

    def start(self) -> None:
        """Start every listener."""
        if self.settings.dicom_open:
            log.warning(
                "PACSFLOW_DICOM_OPEN is set: any DICOM AE may query and retrieve everything. "
                "Use this in a lab only."
            )
        if self.syslog is not None:
            self.syslog.start()
        self.dicom.start()
        self.hl7.start()
        self.http.start()
        self.worker.start()
        recorded = record_settings(
            SqlUnitOfWorkFactory(self.engine),
            self.audit,
            self.clock,
            f"{self.settings.ae_title}@{socket.gethostname()}",
            redacted_settings(self.settings),
        )
        if recorded is not None:
            log.info("%s", recorded.summary())
        self.audit.record(
            application_activity(
                self.audit.source,
                ActiveParticipant(self.settings.ae_title, user_name="pacsflow"),
                self.clock.now(),
            )
        )
        log.info(
            "pacsflow up: DICOM %s@%s:%d, HL7 MLLP %s:%d, HTTP http://%s:%d",
            self.settings.ae_title,
            self.settings.host,
            self.dicom.port,
            self.settings.host,
            self.hl7.port,
            self.settings.host,
            self.http.port,
        )

    def stop(self) -> None:
        """Stop every listener and release the database."""
        for name, stop in (
            ("jobs", self.worker.stop),
            ("http", self.http.stop),
            ("hl7", self.hl7.stop),
            ("dicom", self.dicom.stop),
        ):
            try:
                stop()
            except Exception:  # keep stopping the others
                log.exception("stopping the %s listener failed", name)
        if self.syslog is not None:
            self.syslog.close(5)
        self.engine.dispose()
        self._stopped.set()

    def wait(self) -> None:
        """Block until stop() is called."""
        self._stopped.wait()


__all__ = ["Pacsflow", "SystemClock", "prepare_database"]
