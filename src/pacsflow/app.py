"""Composition root: Settings -> services -> listeners and workers; starts and stops them."""

from __future__ import annotations

import logging
import socket
import ssl
import tempfile
import threading
from typing import Any

from pacsflow.adapters.dicom.sender import DicomSender
from pacsflow.adapters.dicom.server import Destination, DicomServer
from pacsflow.adapters.hl7 import Hl7Service, MllpServer, SenderFieldMaps
from pacsflow.adapters.http import HttpServer, create_app
from pacsflow.adapters.security import server_context
from pacsflow.config import Settings
from pacsflow.domain.access import PeerRights
from pacsflow.domain.audit import ActiveParticipant
from pacsflow.domain.audit_events import application_activity
from pacsflow.services import Services, SystemClock, prepare_database
from pacsflow.worker import Handler, Worker
from pacsflow.workflow.commitment import STORAGE_COMMITMENT_JOB, StorageCommitment
from pacsflow.workflow.ports.clock import Clock
from pacsflow.workflow.settings_audit import record_settings

log = logging.getLogger(__name__)


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


class Pacsflow:
    """One pacsflow node: DICOM, HL7 MLLP and HTTP listeners over one database and blob store."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        prepare_database(settings)
        staging = settings.data_dir / "tmp"
        staging.mkdir(parents=True, exist_ok=True)
        # pynetdicom streams each C-STORE into a temporary file; keeping it on the data
        # directory's filesystem makes the move into the blob store an atomic rename.
        tempfile.tempdir = str(staging)
        self.services = services = Services(settings, clock, wake=self._wake_worker)
        self.engine = services.engine
        self.clock = services.clock
        self.accounts = services.accounts
        self.audit = services.audit
        self.queries = services.queries
        self.routing = services.routing
        self.prefetch = services.prefetch
        self.results = services.results
        self.intake = services.intake
        self.jobs = services.jobs
        self.reconciliation = services.reconciliation
        self.commitment = StorageCommitment(
            services.uow,
            self.jobs.enqueue,
            DicomSender(settings.ae_title, settings.peer_address, self.queries.local_file),
        )
        self.dicom = DicomServer(
            ae_title=settings.ae_title,
            host=settings.host,
            port=settings.dicom_port,
            ingest=services.ingest,
            steps=services.steps,
            queries=self.queries,
            peers=self._destination,
            audit=self.audit,
            clock=self.clock,
            rights=self._rights,
            is_open=settings.dicom_open,
            strict_titles=(
                frozenset(p.ae_title for p in settings.peers) if settings.dicom_strict else None
            ),
            ssl_context=self._tls("dicom"),
            max_pdu=settings.dicom_max_pdu,
            max_associations=settings.dicom_max_associations,
            max_associations_per_address=settings.dicom_max_associations_per_address,
            artim_timeout=settings.dicom_artim_timeout,
            commitment=self.commitment,
            fast_storage=settings.dicom_fast_storage,
        )
        # Job handlers by kind; every feature that causes durable work registers its own.
        self.handlers: dict[str, Handler] = {
            STORAGE_COMMITMENT_JOB: self.commitment.report,
            **services.job_handlers(),
        }
        service = Hl7Service(
            self.intake,
            SenderFieldMaps.from_settings(settings.hl7_fields),
            app_name=settings.hl7_application,
            facility=settings.hl7_facility,
            assume_zone=self.clock.zone,
            clock=self.clock.now,
            allowed_senders=frozenset(settings.hl7_allowed_senders),
        )
        self.hl7 = MllpServer(
            settings.host, settings.hl7_port, service.handle, ssl_context=self._tls("hl7")
        )
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
                reading=services.reading,
                exception_queue=services.exception_queue,
            ),
            settings.host,
            settings.http_port,
            ssl_context=self._tls("http"),
        )
        self.worker = services.worker(self.handlers)
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
        if self.services.syslog is not None:
            self.services.syslog.start()
        self.dicom.start()
        self.hl7.start()
        self.http.start()
        self.worker.start()
        recorded = record_settings(
            self.services.uow,
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
        if self.services.syslog is not None:
            self.services.syslog.close(5)
        self.engine.dispose()
        self._stopped.set()

    def wait(self) -> None:
        """Block until stop() is called."""
        self._stopped.wait()


__all__ = ["Pacsflow", "SystemClock", "prepare_database"]
