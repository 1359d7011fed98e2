"""Composition root: Settings -> adapters -> workflow; starts and stops the listeners."""

from __future__ import annotations

import logging
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path

from pacsflow.adapters.blobs import open_blob_store
from pacsflow.adapters.db import SqlUnitOfWorkFactory, make_engine, upgrade
from pacsflow.adapters.dicom.server import Destination, DicomServer
from pacsflow.adapters.hl7 import FieldMap, Hl7Service, MllpServer
from pacsflow.adapters.http import HttpServer, create_app
from pacsflow.config import Settings
from pacsflow.domain.orders import StationRule
from pacsflow.workflow.ingest import Ingest
from pacsflow.workflow.intake import Intake
from pacsflow.workflow.procedure_steps import ProcedureSteps
from pacsflow.workflow.queries import Queries

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


class Pacsflow:
    """One pacsflow node: DICOM, HL7 MLLP and HTTP listeners over one database and blob store."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        url = prepare_database(settings)
        staging = settings.data_dir / "tmp"
        staging.mkdir(parents=True, exist_ok=True)
        # pynetdicom streams each C-STORE into a temporary file; keeping it on the data
        # directory's filesystem makes the move into the blob store an atomic rename.
        tempfile.tempdir = str(staging)
        self.engine = make_engine(url)
        uow = SqlUnitOfWorkFactory(self.engine)
        clock = SystemClock()
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
        self.intake = Intake(uow, clock, rules)
        self.ingest = Ingest(uow, blobs, clock)
        self.queries = Queries(uow, blobs)
        self.steps = ProcedureSteps(uow, clock)
        self.dicom = DicomServer(
            ae_title=settings.ae_title,
            host=settings.host,
            port=settings.dicom_port,
            ingest=self.ingest,
            steps=self.steps,
            queries=self.queries,
            peers=self._destination,
            max_pdu=settings.dicom_max_pdu,
            max_associations=settings.dicom_max_associations,
        )
        service = Hl7Service(
            self.intake,
            FieldMap().with_overrides(settings.hl7_fields),
            app_name=settings.hl7_application,
            facility=settings.hl7_facility,
        )
        self.hl7 = MllpServer(settings.host, settings.hl7_port, service.handle)
        self.http = HttpServer(
            create_app(self.queries, self.health), settings.host, settings.http_port
        )
        self._stopped = threading.Event()

    def _destination(self, ae_title: str) -> Destination | None:
        peer = self.settings.peer(ae_title)
        return Destination(peer.host, peer.port) if peer else None

    def health(self) -> dict[str, str]:
        """The state of each listener."""
        return {
            "dicom": "up" if self.dicom.is_running else "down",
            "hl7": "up" if self.hl7.is_serving else "down",
            "http": "up" if self.http.is_running else "down",
        }

    def start(self) -> None:
        """Start every listener."""
        self.dicom.start()
        self.hl7.start()
        self.http.start()
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
            ("http", self.http.stop),
            ("hl7", self.hl7.stop),
            ("dicom", self.dicom.stop),
        ):
            try:
                stop()
            except Exception:  # keep stopping the others
                log.exception("stopping the %s listener failed", name)
        self.engine.dispose()
        self._stopped.set()

    def wait(self) -> None:
        """Block until stop() is called."""
        self._stopped.wait()


def data_path(settings: Settings) -> Path:
    """The resolved data directory."""
    return settings.data_dir.resolve()


__all__ = ["Pacsflow", "SystemClock", "prepare_database"]
