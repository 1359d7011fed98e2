"""The DICOM listener: Verification, Storage, MWL, MPPS, Storage Commitment, Query/Retrieve."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, _config, evt
from pynetdicom.events import Event
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StorageCommitmentPushModel,
    StorageCommitmentPushModelInstance,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer
from pynetdicom.utils import make_target

from pacsflow.adapters.dicom import _tuning, spool, status
from pacsflow.adapters.dicom.byte_order import as_little_endian, is_big_endian
from pacsflow.adapters.dicom.completeness import check_complete
from pacsflow.adapters.dicom.connections import GuardedServer, ListeningAE, bound_reads
from pacsflow.adapters.dicom.datasets import (
    arrived_instance,
    coerce_identity,
    image_level_dataset,
    patient_level_dataset,
    read_header,
    series_level_dataset,
    study_level_dataset,
    with_character_set,
    worklist_dataset,
    worklist_filter,
)
from pacsflow.adapters.dicom.fast_header import read_identifying
from pacsflow.adapters.dicom.fast_store import Caller, FastStore, ReceivedObject
from pacsflow.adapters.dicom.matching import matches, project
from pacsflow.adapters.dicom.negotiation import STORAGE_SOP_CLASSES, STORAGE_TRANSFER_SYNTAXES
from pacsflow.adapters.dicom.rejections import read_rejection
from pacsflow.domain import audit as atna
from pacsflow.domain import audit_events as atna_events
from pacsflow.domain.access import DicomOperation, PeerRights, dicom_allows, move_allowed
from pacsflow.domain.errors import (
    Forbidden,
    InvalidInput,
    PacsflowError,
    PermanentError,
    StorageFull,
    TransientError,
)
from pacsflow.domain.jobs import Job, NewJob
from pacsflow.domain.patients import Issuer, Patient, PatientId, PatientIdentifier
from pacsflow.domain.procedure_steps import PerformedStep
from pacsflow.domain.studies import InstanceRecord, StudyFilter
from pacsflow.domain.uids import Uid
from pacsflow.workflow.audit import AuditTrail
from pacsflow.workflow.ingest import Ingest, IngestStatus
from pacsflow.workflow.procedure_steps import ProcedureSteps
from pacsflow.workflow.queries import Queries, StudyView

log = logging.getLogger(__name__)

_UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a C-MOVE destination AE title can be reached."""

    host: str
    port: int


PeerLookup = Callable[[str], Destination | None]
RightsLookup = Callable[[str], PeerRights | None]


def _nodelay(event: Event) -> None:
    """Disable Nagle on every DICOM socket: small PDUs otherwise wait ~40 ms for an ACK."""
    sock = event.assoc.dul.socket
    if sock is not None and sock.socket is not None:
        sock.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


#: The job kind of a storage commitment report (run by DicomServer.report_commitment).
STORAGE_COMMITMENT_JOB = "storage_commitment"


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
        ssl_context: ssl.SSLContext | None = None,
        is_open: bool = False,
        strict_titles: frozenset[str] | None = None,
        max_pdu: int = 262144,
        max_associations: int = 32,
        max_associations_per_address: int = 0,
        artim_timeout: float = 5.0,
        enqueue: Callable[[NewJob], int],
        fast_storage: bool = True,
    ) -> None:
        self.ae_title = ae_title
        self._enqueue = enqueue
        self._rights = rights
        self._audit = audit
        # Studies stored per association (each audited with its first instance).
        self._received: dict[int, set[str]] = {}
        self._received_lock = threading.Lock()
        self._ssl = ssl_context
        self._is_open = is_open
        self._host = host
        self._port = port
        self._ingest = ingest
        self._steps = steps
        self._queries = queries
        self._peers = peers
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
        # Storage-only associations skip pynetdicom's per-PDU machinery (see fast_store).
        self._fast = (
            FastStore(
                ae,
                self._store,
                self._closed,
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
            (evt.EVT_CONN_CLOSE, self._on_close),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_C_MOVE, self._on_move),
            (evt.EVT_C_GET, self._on_get),
            (evt.EVT_N_CREATE, self._on_n_create),
            (evt.EVT_N_SET, self._on_n_set),
            (evt.EVT_N_ACTION, self._on_n_action),
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

    # -- Verification -------------------------------------------------------------------------

    def _on_echo(self, event: Event) -> int:
        return status.SUCCESS

    # -- Storage ------------------------------------------------------------------------------

    def _on_store(self, event: Event) -> int | Dataset:
        spooled = getattr(event.request, "_dataset_file", None)  # see spool.install
        received = ReceivedObject(
            path=Path(event.dataset_path),
            transfer_syntax=str(event.context.transfer_syntax),
            sop_class_uid=_request_uid(event, "AffectedSOPClassUID"),
            sop_instance_uid=_request_uid(event, "AffectedSOPInstanceUID"),
            spool_error=spooled.error if isinstance(spooled, spool.SpoolFile) else None,
        )
        return self._store(_caller(event), received)

    def _store(self, caller: Caller, received: ReceivedObject) -> int | Dataset:
        """Store one received object: the C-STORE status (both receive paths end here)."""
        try:
            self._allow(caller.ae_title, DicomOperation.STORE)
            if received.spool_error is not None:  # read to its end and dropped: disk full
                refused = spool.refusal(received.spool_error)
                if isinstance(refused, StorageFull):
                    self._ingest.refused_for_space(caller.ae_title, refused)
                raise refused
            transfer_syntax, data = received.transfer_syntax, received.data
            source: Path | bytes = data if data is not None else _spooled(received)
            # The header alone reads fine from a data set cut short: walk it all first.
            check_complete(_readable(source), transfer_syntax)
            header = read_identifying(source) or read_header(_readable(source))
            if str(header.get("SOPInstanceUID", "")) != received.sop_instance_uid:
                return status.failure(
                    status.DATASET_MISMATCH, "SOP Instance UID differs from the command's"
                )
            arrived = arrived_instance(header, transfer_syntax, caller.ae_title)
            rejection = read_rejection(header, _readable(source))  # an IOCM rejection note?
            if rejection is not None:
                arrived = replace(arrived, rejection=rejection)
            study = arrived.instance.study_instance_uid
            with self._received_lock:
                audited = study in self._received.get(caller.association, ())
            result = self._ingest.receive(
                arrived,
                source,
                requestor=_participant(caller),
                # The first instance of each study an association stores carries the audit
                # record of the transfer in its own transaction (PS3.15 A.5.3.2: one patient
                # per message), so an acknowledged object is never left unaudited.
                receiver=(
                    None
                    if audited or self._audit is None
                    else atna.ActiveParticipant(user_id=self.ae_title)
                ),
            )
            if result.status is IngestStatus.STORED:
                with self._received_lock:
                    self._received.setdefault(caller.association, set()).add(
                        arrived.instance.study_instance_uid
                    )
            return status.SUCCESS
        except PacsflowError as exc:
            log.warning("C-STORE refused: %s", exc)
            return status.failure(status.store_status(exc), str(exc))
        except Exception as exc:  # an entry handler: answer a failure, keep serving
            log.exception("C-STORE failed")
            return status.failure(status.UNABLE_TO_PROCESS, f"not stored: {type(exc).__name__}")

    # -- C-FIND: worklist and query/retrieve ---------------------------------------------------

    def _check(self, event: Event, operation: DicomOperation) -> str:
        """The calling AE title, once it is allowed to perform the operation."""
        return self._allow(str(event.assoc.requestor.ae_title).strip(), operation)

    def _allow(self, caller: str, operation: DicomOperation) -> str:
        if not dicom_allows(operation, self._rights(caller), is_open=self._is_open):
            log.warning("refused %s from calling AE %r: not a configured peer", operation, caller)
            raise Forbidden(f"calling AE {caller} may not {operation.value}")
        return caller

    def _record(self, event: atna.AuditEvent) -> None:
        if self._audit is not None:
            self._audit.record(event)

    def _audit_query(self, event: Event, model: str, query: Dataset, outcome: int) -> None:
        if self._audit is None:
            return
        text = ", ".join(
            f"{e.keyword}={e.value}" for e in query if e.keyword and e.VR != "SQ" and e.value
        )
        self._record(
            atna_events.query(
                self._audit.source,
                _participant(_caller(event)),
                datetime.now(UTC),
                query_text=text,
                sop_class_uid=model,
                outcome=atna.Outcome(outcome),
            )
        )

    def _audit_retrieve(
        self, event: Event, instances: list[InstanceRecord], destination: str
    ) -> None:
        if self._audit is None:
            return
        studies = sorted({i.study_instance_uid for i in instances})
        caller = _participant(_caller(event))
        receiver = (
            caller if destination == caller.user_id else atna.ActiveParticipant(user_id=destination)
        )
        self._record(
            atna_events.instances_transferred(
                self._audit.source,
                atna.ActiveParticipant(user_id=self.ae_title),
                receiver,
                datetime.now(UTC),
                action=atna.Action.READ,
                requestor=caller if receiver is not caller else None,
                studies=[atna_events.study_object(uid) for uid in studies],
            )
        )

    def _on_close(self, event: Event) -> None:
        self._closed(_caller(event))

    def _closed(self, caller: Caller) -> None:
        """Forget what an association stored (each study was audited when it arrived)."""
        with self._received_lock:
            self._received.pop(caller.association, None)

    def _on_find(self, event: Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        query, model = event.identifier, _request_uid(event, "AffectedSOPClassUID")
        try:
            is_worklist = model == ModalityWorklistInformationFind
            try:
                self._check(event, DicomOperation.WORKLIST if is_worklist else DicomOperation.QUERY)
            except Forbidden:
                self._audit_query(event, model, query, atna.Outcome.MINOR_FAILURE)
                raise
            self._audit_query(event, model, query, atna.Outcome.SUCCESS)
            candidates: Iterator[Dataset]
            keys = query
            if is_worklist:
                items = self._queries.worklist(worklist_filter(query))
                candidates = (worklist_dataset(item) for item in items)
            else:
                candidates = self._qr_candidates(query)
                keys = _identity_resolved(query)
            for candidate in candidates:
                if event.is_cancelled:
                    yield status.CANCEL, None
                    return
                if matches(keys, candidate):
                    yield status.PENDING, with_character_set(project(query, candidate))
            yield status.SUCCESS, None
        except Forbidden as exc:
            yield status.failure(status.NOT_AUTHORIZED, str(exc)), None
        except PacsflowError as exc:
            log.warning("C-FIND refused: %s", exc)
            yield status.CANNOT_UNDERSTAND, None
        except Exception:
            log.exception("C-FIND failed")
            yield status.UNABLE_TO_PROCESS, None

    def _studies_for(self, query: Dataset) -> list[StudyView]:
        patient_id = str(query.get("PatientID", "") or "")
        uids = [u for u in str(query.get("StudyInstanceUID", "") or "").split("\\") if u]
        accession = str(query.get("AccessionNumber", "") or "")
        issuer = str(query.get("IssuerOfPatientID", "") or "")
        flt = StudyFilter(
            patient=(
                PatientIdentifier(
                    PatientId(patient_id), Issuer("" if any(c in issuer for c in "*?") else issuer)
                )
                if patient_id and not any(c in patient_id for c in "*?")
                else None
            ),
            study_instance_uids=tuple(Uid(u) for u in uids),
            accession_number="" if any(c in accession for c in "*?") else accession,
            limit=100_000,
        )
        return self._queries.studies(flt)

    def _qr_candidates(self, query: Dataset) -> Iterator[Dataset]:
        level = str(query.get("QueryRetrieveLevel", "")).strip().upper()
        if level not in ("PATIENT", "STUDY", "SERIES", "IMAGE"):
            raise InvalidInput(f"unknown Query/Retrieve Level {level!r}")
        views = self._studies_for(query)
        if level == "PATIENT":
            yield from self._patient_candidates(views)
            return
        for view in views:
            study_ds = study_level_dataset(view)
            if level == "STUDY":
                yield study_ds
                continue
            instances = self._queries.instances(study_uids=[view.study.study_instance_uid])
            by_series: dict[str, list[InstanceRecord]] = {}
            for inst in instances:
                by_series.setdefault(inst.series_instance_uid, []).append(inst)
            for members in by_series.values():
                series_ds = series_level_dataset(study_ds, members[0], len(members))
                if level == "SERIES":
                    yield series_ds
                    continue
                for inst in members:
                    yield image_level_dataset(series_ds, inst)

    def _patient_candidates(self, views: list[StudyView]) -> Iterator[Dataset]:
        counts: dict[PatientIdentifier, tuple[Patient, int]] = {}
        for view in views:
            if view.patient is None:
                continue
            key = view.patient.primary
            patient, n = counts.get(key, (view.patient, 0))
            counts[key] = (patient, n + 1)
        for patient, n in counts.values():
            yield patient_level_dataset(patient, n)

    # -- C-MOVE / C-GET ------------------------------------------------------------------------

    def _selected(self, query: Dataset) -> list[InstanceRecord]:
        level = str(query.get("QueryRetrieveLevel", "")).strip().upper()

        def uids(keyword: str) -> list[Uid]:
            return [Uid(u) for u in str(query.get(keyword, "") or "").split("\\") if u]

        if level == "IMAGE" and uids("SOPInstanceUID"):
            return list(self._queries.instances(sop_uids=uids("SOPInstanceUID")))
        if level in ("SERIES", "IMAGE") and uids("SeriesInstanceUID"):
            return list(self._queries.instances(series_uids=uids("SeriesInstanceUID")))
        if level in ("STUDY", "SERIES", "IMAGE") and uids("StudyInstanceUID"):
            return list(self._queries.instances(study_uids=uids("StudyInstanceUID")))
        # Lenient like most archives: a Patient ID alone retrieves the patient's studies.
        if query.get("PatientID"):
            views = self._studies_for(query)
            return list(
                self._queries.instances(study_uids=[v.study.study_instance_uid for v in views])
            )
        raise InvalidInput(f"no unique key to retrieve at level {level!r}")

    def _outgoing(self, instances: list[InstanceRecord]) -> Iterator[Dataset]:
        """Stored instances with the index's identity coerced in (files stay as received)."""
        views: dict[str, StudyView | None] = {}
        for inst in instances:
            uid = inst.study_instance_uid
            if uid not in views:
                views[uid] = self._queries.study(uid)
            path = self._queries.local_file(inst)
            if path is None:
                raise InvalidInput(f"instance {inst.sop_instance_uid} has no local file")
            ds = dcmread(path, defer_size="1 MB")
            view = views[uid]
            if view is not None and view.patient is not None:
                coerce_identity(ds, view.patient, view.study.accession_number, uid)
            yield ds

    def _big_endian_accepted(self, event: Event, sop_class: str) -> bool:
        """True when the C-GET peer accepted Big Endian for the class (never for C-MOVE)."""
        if event.event is not evt.EVT_C_GET:
            return False  # C-MOVE proposes little endian only for these (_contexts_for)
        return any(
            cx.abstract_syntax == sop_class and cx.transfer_syntax[0] == ExplicitVRBigEndian
            for cx in event.assoc.accepted_contexts
        )

    def _on_move(self, event: Event) -> Iterator[Any]:
        target = str(event.move_destination).strip()
        caller = str(event.assoc.requestor.ae_title).strip()
        destination = self._peers(target)
        if destination is None or not move_allowed(
            caller, self._rights(caller), target, is_open=self._is_open
        ):
            # Unknown and not-allowed destinations get the same answer (0xA801).
            log.warning("C-MOVE from %r to %r refused", caller, target)
            yield None, None
            return
        try:
            instances, error = self._selected(event.identifier), None
        except PacsflowError as exc:
            instances, error = [], exc
        yield destination.host, destination.port, {"contexts": _contexts_for(instances)}
        if error is not None:
            log.warning("C-MOVE refused: %s", error)
            raise error  # pynetdicom answers the count step with a failure status
        self._audit_retrieve(event, instances, target)
        yield len(instances)
        yield from self._send(event, instances)

    def _on_get(self, event: Event) -> Iterator[Any]:
        self._check(event, DicomOperation.RETRIEVE)  # raising here fails the C-GET
        instances = self._selected(event.identifier)
        self._audit_retrieve(event, instances, str(event.assoc.requestor.ae_title).strip())
        yield len(instances)
        yield from self._send(event, instances)

    def _send(self, event: Event, instances: list[InstanceRecord]) -> Iterator[Any]:
        for ds in self._outgoing(instances):
            if event.is_cancelled:
                yield status.CANCEL, None
                return
            if is_big_endian(ds) and not self._big_endian_accepted(event, str(ds.SOPClassUID)):
                # Little endian was accepted (getscu +xb proposes big endian first, in one
                # context with little endian): re-encoded losslessly.
                ds = as_little_endian(ds)
            yield status.PENDING, ds

    # -- MPPS -----------------------------------------------------------------------------------

    def _on_n_create(self, event: Event) -> tuple[int | Dataset, Dataset | None]:
        try:
            attrs = event.attribute_list
            sop_uid = _request_uid(event, "AffectedSOPInstanceUID")
            if not sop_uid:
                raise InvalidInput("N-CREATE without an Affected SOP Instance UID")
            step = _performed_step(sop_uid, attrs, event.assoc.requestor.ae_title)
            self._steps.start(step)
            return status.SUCCESS, attrs
        except PacsflowError as exc:
            log.warning("MPPS N-CREATE refused: %s", exc)
            return status.failure(status.n_service_status(exc), str(exc)), None
        except Exception:
            log.exception("MPPS N-CREATE failed")
            return status.PROCESSING_FAILURE, None

    def _on_n_set(self, event: Event) -> tuple[int | Dataset, Dataset | None]:
        try:
            mods = event.modification_list
            sop_uid = Uid(_request_uid(event, "RequestedSOPInstanceUID"))
            new_status = str(mods.get("PerformedProcedureStepStatus", "") or "").strip()
            self._steps.update(sop_uid, new_status)
            return status.SUCCESS, mods
        except PacsflowError as exc:
            log.warning("MPPS N-SET refused: %s", exc)
            return status.failure(status.n_service_status(exc), str(exc)), None
        except Exception:
            log.exception("MPPS N-SET failed")
            return status.PROCESSING_FAILURE, None

    # -- Storage Commitment (push model) -------------------------------------------------------

    def _on_n_action(self, event: Event) -> tuple[int | Dataset, Dataset | None]:
        try:
            info = event.action_information
            if event.action_type != 1:
                return status.failure(0x0123, "unsupported action type"), None
            transaction = str(info.get("TransactionUID", ""))
            refs = [
                (str(item.ReferencedSOPClassUID), str(item.ReferencedSOPInstanceUID))
                for item in info.get("ReferencedSOPSequence", [])
            ]
            if not transaction:
                raise InvalidInput("N-ACTION without a Transaction UID")
            requestor = str(event.assoc.requestor.ae_title).strip()
            # Durably queued before the N-ACTION succeeds: a restart cannot lose the report.
            self._enqueue(
                NewJob(
                    STORAGE_COMMITMENT_JOB,
                    {"requestor": requestor, "transaction": transaction, "refs": refs},
                    destination=requestor,
                )
            )
            return status.SUCCESS, None
        except PacsflowError as exc:
            log.warning("Storage commitment refused: %s", exc)
            return status.failure(status.n_service_status(exc), str(exc)), None
        except Exception:
            log.exception("Storage commitment N-ACTION failed")
            return status.PROCESSING_FAILURE, None

    def report_commitment(self, job: Job) -> None:
        """The storage_commitment job: send the N-EVENT-REPORT (PS3.4 J.3.3) to the requestor.

        Sent on a new association; a requestor that cannot be reached is retried by the
        queue, one that is not a configured peer is dead-lettered (nowhere to send it).
        """
        requestor = str(job.payload["requestor"])
        transaction = str(job.payload["transaction"])
        refs = [(str(c), str(i)) for c, i in job.payload["refs"]]
        destination = self._peers(requestor)
        if destination is None:
            raise PermanentError(f"AE {requestor!r} is not a configured peer: no address")
        report = Dataset()
        report.TransactionUID = transaction
        committed, failed = [], []
        for class_uid, inst_uid in refs:
            item = Dataset()
            item.ReferencedSOPClassUID = class_uid
            item.ReferencedSOPInstanceUID = inst_uid
            if self._queries.instance_known(Uid(inst_uid)):
                committed.append(item)
            else:
                item.FailureReason = status.NO_SUCH_OBJECT_INSTANCE
                failed.append(item)
        if committed:
            report.ReferencedSOPSequence = committed
        if failed:
            report.FailedSOPSequence = failed
        ensure_reachable(destination.host, destination.port, requestor)
        ae = AE(ae_title=self.ae_title)
        ae.add_requested_context(StorageCommitmentPushModel)
        role = SCP_SCU_RoleSelectionNegotiation()
        role.sop_class_uid = UID(StorageCommitmentPushModel)
        role.scu_role = False
        role.scp_role = True
        assoc = ae.associate(
            destination.host,
            destination.port,
            ae_title=requestor,
            ext_neg=[role],
            evt_handlers=[(evt.EVT_CONN_OPEN, _nodelay)],
        )
        if not assoc.is_established:
            raise TransientError(f"cannot associate with {requestor} at {destination}")
        try:
            answer, _ = assoc.send_n_event_report(
                report,
                2 if failed else 1,
                StorageCommitmentPushModel,
                StorageCommitmentPushModelInstance,
            )
        finally:
            assoc.release()
        code = int(getattr(answer, "Status", -1)) if answer else -1
        if code != status.SUCCESS:
            raise TransientError(f"{requestor} answered the report with status {code:#06x}")
        log.info(
            "storage commitment %s: %d committed, %d failed",
            transaction,
            len(committed),
            len(failed),
        )


def ensure_reachable(host: str, port: int, ae_title: str, timeout: float = 5.0) -> None:
    """Raise TransientError unless host:port accepts a TCP connection.

    pynetdicom leaks its socket when a connection is refused; probing first keeps a peer
    that is down from costing a file descriptor per retry.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise TransientError(f"cannot reach {ae_title} at {host}:{port}: {exc}") from exc


def _identity_resolved(query: Dataset) -> Dataset:
    """The query keys left to match once the index has chosen the studies of its Patient ID.

    An exact Patient ID (with its issuer) selects the studies of the patient holding it and of
    the patients linked to it (ADT A24); each answer carries its own patient's identity, which
    may be a linked patient's ID, so the ID is not matched again (it is still returned).
    """
    patient_id = str(query.get("PatientID", "") or "")
    if not patient_id or any(c in patient_id for c in "*?"):
        return query
    keys = Dataset()
    keys.update(query)  # shares the elements: replace the two below, never assign into them
    del keys.PatientID
    keys.PatientID = ""
    if "IssuerOfPatientID" in keys:
        del keys.IssuerOfPatientID
        keys.IssuerOfPatientID = ""
    return keys


def _spooled(received: ReceivedObject) -> Path:
    assert received.path is not None, "a received object has its file or its bytes"
    return received.path


def _readable(source: Path | bytes) -> Path | BytesIO:
    """What the readers of a received object take: its file, or its bytes as a file."""
    return BytesIO(source) if isinstance(source, bytes) else source


def _caller(event: Event) -> Caller:
    """The calling side of the association that raised a pynetdicom event."""
    requestor = event.assoc.requestor
    return Caller(str(requestor.ae_title).strip(), str(requestor.address), id(event.assoc))


def _participant(caller: Caller) -> atna.ActiveParticipant:
    """The calling AE as an audit participant (AE title and network address)."""
    return atna.ActiveParticipant(
        user_id=caller.ae_title, is_requestor=True, network_access_point=caller.address
    )


def _request_uid(event: Event, keyword: str) -> str:
    """A UID parameter of the DIMSE request that raised the event ('' when absent)."""
    return str(getattr(event.request, keyword, "") or "").strip()


def _performed_step(sop_uid: str, attrs: Dataset, station: str) -> PerformedStep:
    accession, study_uid = "", ""
    for item in attrs.get("ScheduledStepAttributesSequence", []):
        accession = accession or str(item.get("AccessionNumber", "") or "")
        study_uid = study_uid or str(item.get("StudyInstanceUID", "") or "")
    return PerformedStep(
        sop_instance_uid=Uid(sop_uid),
        status=str(attrs.get("PerformedProcedureStepStatus", "") or "").strip(),
        accession_number=accession,
        study_instance_uid=study_uid,
        performed_station_ae=str(attrs.get("PerformedStationAETitle", "") or station),
    )


def _contexts_for(instances: list[InstanceRecord]) -> list[PresentationContext]:
    """Presentation contexts for sending these instances as stored (at most 128)."""
    wanted: dict[str, set[str]] = {}
    for inst in instances:
        wanted.setdefault(inst.sop_class_uid, set()).add(inst.transfer_syntax_uid)
    contexts = []
    for sop_class, syntaxes in sorted(wanted.items()):
        # Big Endian leaves as little endian (lossless): one context fewer to be refused.
        for ts in sorted((syntaxes - {ExplicitVRBigEndian}) | set(_UNCOMPRESSED)):
            contexts.append(build_context(sop_class, [ts]))
    return contexts[:128]


__all__ = ["STORAGE_TRANSFER_SYNTAXES", "Destination", "DicomServer", "PeerLookup"]
