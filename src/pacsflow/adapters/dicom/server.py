"""The DICOM listener: one AE whose services are the handlers in scp/ (this module wires them).

Verification, Storage (also served by fastpath/ for storage-only associations), Modality
Worklist, MPPS, Storage Commitment and Query/Retrieve, as pynetdicom's own service classes
are cut.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import _config, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StorageCommitmentPushModel,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer
from pynetdicom.utils import make_target

from pacsflow.adapters.dicom import _tuning, spool, status
from pacsflow.adapters.dicom.connections import GuardedServer, ListeningAE, bound_reads
from pacsflow.adapters.dicom.fastpath.receiver import FastStore
from pacsflow.adapters.dicom.negotiation import STORAGE_SOP_CLASSES, STORAGE_TRANSFER_SYNTAXES
from pacsflow.adapters.dicom.scp.commitment import CommitmentScp
from pacsflow.adapters.dicom.scp.context import RightsLookup, ScpContext, request_uid
from pacsflow.adapters.dicom.scp.mpps import MppsScp
from pacsflow.adapters.dicom.scp.query_retrieve import Destination, PeerLookup, QueryRetrieveScp
from pacsflow.adapters.dicom.scp.storage import StorageScp
from pacsflow.adapters.dicom.scp.worklist import WorklistScp
from pacsflow.workflow.audit import AuditTrail
from pacsflow.workflow.commitment import StorageCommitment
from pacsflow.workflow.ingest import Ingest
from pacsflow.workflow.ports.clock import Clock
from pacsflow.workflow.procedure_steps import ProcedureSteps
from pacsflow.workflow.queries import Queries

log = logging.getLogger(__name__)

_UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


def _nodelay(event: Event) -> None:
    """Disable Nagle on every DICOM socket: small PDUs otherwise wait ~40 ms for an ACK."""
    sock = event.assoc.dul.socket
    if sock is not None and sock.socket is not None:
        sock.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class DicomServer:
    """pacsflow's DICOM application entity and its handlers."""

    def __init__(
        self,
        *,
        ae_title: str,
        host: str,
        port: int,
        ingest: Ingest,
        steps: ProcedureSteps,
        queries: Queries,
        peers: PeerLookup,
        rights: RightsLookup = lambda _ae: None,
        audit: AuditTrail | None = None,
        clock: Clock,
        ssl_context: ssl.SSLContext | None = None,
        is_open: bool = False,
        strict_titles: frozenset[str] | None = None,
        max_pdu: int = 262144,
        max_associations: int = 32,
        max_associations_per_address: int = 0,
        artim_timeout: float = 5.0,
        commitment: StorageCommitment,
        fast_storage: bool = True,
    ) -> None:
        self.ae_title = ae_title
        context = ScpContext(ae_title, rights, is_open, audit, clock)
        self._storage = StorageScp(context, ingest)
        self._worklist = WorklistScp(context, queries)
        self._query_retrieve = QueryRetrieveScp(context, queries, peers)
        self._mpps = MppsScp(steps)
        self._commitment = CommitmentScp(commitment)
        self._ssl = ssl_context
        self._host = host
        self._port = port
        self._server: ThreadedAssociationServer | None = None
        self._artim = artim_timeout
        self._per_address = max_associations_per_address
        # Receive C-STORE data sets straight into a file: memory stays bounded for any size.
        _config.STORE_RECV_CHUNKED_DATASET = True
        # Wake pynetdicom's reactor threads on events instead of 1 ms polling (see _tuning).
        _tuning.apply()
        # A data set that cannot be spooled (disk full) is refused, not aborted (see spool).
        spool.install()
        ae = ListeningAE(ae_title=ae_title)
        ae.maximum_pdu_size = max_pdu
        ae.maximum_associations = max_associations
        ae.network_timeout = 60
        ae.dimse_timeout = 60
        # PS3.8's ARTIM timer in pynetdicom (awaiting A-RELEASE-RP, the close after an
        # A-ABORT or A-ASSOCIATE-RJ); before an association it is GuardedServer's (connections).
        ae.acse_timeout = artim_timeout
        for sop_class in STORAGE_SOP_CLASSES:
            # scu_role/scp_role accept the role reversal C-GET needs.
            ae.add_supported_context(
                sop_class, STORAGE_TRANSFER_SYNTAXES, scu_role=True, scp_role=True
            )
        for uid in (
            Verification,
            ModalityWorklistInformationFind,
            ModalityPerformedProcedureStep,
            StorageCommitmentPushModel,
            PatientRootQueryRetrieveInformationModelFind,
            PatientRootQueryRetrieveInformationModelMove,
            PatientRootQueryRetrieveInformationModelGet,
            StudyRootQueryRetrieveInformationModelFind,
            StudyRootQueryRetrieveInformationModelMove,
            StudyRootQueryRetrieveInformationModelGet,
        ):
            ae.add_supported_context(uid, _UNCOMPRESSED)
        if strict_titles is not None:
            # Strict mode: associations from AE titles that are not configured are rejected.
            ae.require_calling_aet = sorted(strict_titles)
        self._ae = ae
        # Storage-only associations skip pynetdicom's per-PDU machinery (see fastpath.receiver).
        self._fast = (
            FastStore(
                ae,
                self._storage.store,
                self._storage.closed,
                other_associations=lambda: len(ae.active_associations),
            )
            if fast_storage
            else None
        )

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        assert self._server is not None, "server not started"
        return int(self._server.server_address[1])

    @property
    def fast_associations(self) -> int:
        """Associations served by the fast storage path since start (0 when it is off)."""
        return self._fast.served if self._fast is not None else 0

    @property
    def is_running(self) -> bool:
        """True while the listener accepts associations."""
        return self._server is not None

    def start(self) -> None:
        """Start listening (returns at once)."""
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, _nodelay),
            # Reads wait at most ARTIM until the association is accepted, then the network
            # timeout: a peer that stops mid-PDU cannot hold its association forever.
            (evt.EVT_CONN_OPEN, bound_reads, [self._artim]),
            (evt.EVT_ACCEPTED, bound_reads, [self._ae.network_timeout]),
            (evt.EVT_CONN_CLOSE, self._storage.on_close),
            (evt.EVT_C_ECHO, _on_echo),
            (evt.EVT_C_STORE, self._storage.on_store),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_C_MOVE, self._query_retrieve.move),
            (evt.EVT_C_GET, self._query_retrieve.get),
            (evt.EVT_N_CREATE, self._mpps.n_create),
            (evt.EVT_N_SET, self._mpps.n_set),
            (evt.EVT_N_ACTION, self._commitment.n_action),
        ]
        # ae.start_server(block=False), with the server class that holds each connection
        # until its A-ASSOCIATE-RQ is complete, then offers it to the fast storage path first.
        server = self._ae.make_server(
            (self._host, self._port),
            evt_handlers=handlers,
            ssl_context=self._ssl,
            server_class=GuardedServer,
        )
        assert isinstance(server, GuardedServer)
        server.fast_store = self._fast
        server.start_admission(artim=self._artim, per_address=self._per_address)
        self._ae._servers.append(server)  # where start_server keeps it (shutdown removes it)
        thread = threading.Thread(
            target=make_target(server.serve_forever), name="pacsflow-dicom", daemon=True
        )
        thread.start()
        self._server = server
        log.info("DICOM listener %s on %s:%d", self.ae_title, self._host, self.port)

    def stop(self) -> None:
        """Stop listening and end open associations."""
        if self._server is not None:
            self._server.shutdown()
            assert isinstance(self._server, GuardedServer)
            self._server.stop_admission()
            self._server = None
        for assoc in self._ae.active_associations:
            assoc.abort()
        if self._fast is not None:
            self._fast.abort_all()  # their threads end on the closed sockets

    def _on_find(self, event: Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        """C-FIND goes to the service of its information model (worklist or Q/R)."""
        if request_uid(event, "AffectedSOPClassUID") == ModalityWorklistInformationFind:
            return self._worklist.find(event)
        return self._query_retrieve.find(event)


def _on_echo(event: Event) -> int:
    """Verification: C-ECHO succeeds."""
    return status.SUCCESS


__all__ = [
    "STORAGE_TRANSFER_SYNTAXES",
    "Destination",
    "DicomServer",
    "PeerLookup",
    "RightsLookup",
]
