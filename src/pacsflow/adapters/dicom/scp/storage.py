"""Storage SCP: the C-STORE handler both receive paths end in (pynetdicom's and fastpath's)."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from io import BytesIO
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom.events import Event

from pacsflow.adapters.dicom import spool, status
from pacsflow.adapters.dicom.completeness import check_complete
from pacsflow.adapters.dicom.datasets import arrived_instance, read_header
from pacsflow.adapters.dicom.fastpath.header import read_identifying
from pacsflow.adapters.dicom.fastpath.session import Caller, ReceivedObject
from pacsflow.adapters.dicom.rejections import read_rejection
from pacsflow.adapters.dicom.scp.context import ScpContext, caller, participant, request_uid
from pacsflow.domain import audit as atna
from pacsflow.domain.access import DicomOperation
from pacsflow.domain.errors import PacsflowError, StorageFull
from pacsflow.workflow.ingest import Ingest, IngestStatus

log = logging.getLogger(__name__)


class StorageScp:
    """Stores received objects durably before answering; audits each study once per association."""

    def __init__(self, context: ScpContext, ingest: Ingest) -> None:
        self._context = context
        self._ingest = ingest
        # Studies stored per association (each audited with its first instance).
        self._received: dict[int, set[str]] = {}
        self._received_lock = threading.Lock()

    def on_store(self, event: Event) -> int | Dataset:
        """pynetdicom's C-STORE handler."""
        spooled = getattr(event.request, "_dataset_file", None)  # see spool.install
        received = ReceivedObject(
            path=Path(event.dataset_path),
            transfer_syntax=str(event.context.transfer_syntax),
            sop_class_uid=request_uid(event, "AffectedSOPClassUID"),
            sop_instance_uid=request_uid(event, "AffectedSOPInstanceUID"),
            spool_error=spooled.error if isinstance(spooled, spool.SpoolFile) else None,
        )
        return self.store(caller(event), received)

    def store(self, caller: Caller, received: ReceivedObject) -> int | Dataset:
        """Store one received object: the C-STORE status (both receive paths end here)."""
        try:
            self._context.allow(caller.ae_title, DicomOperation.STORE)
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
                requestor=participant(caller),
                # The first instance of each study an association stores carries the audit
                # record of the transfer in its own transaction (PS3.15 A.5.3.2: one patient
                # per message), so an acknowledged object is never left unaudited.
                receiver=(
                    None
                    if audited or self._context.audit is None
                    else atna.ActiveParticipant(user_id=self._context.ae_title)
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

    def on_close(self, event: Event) -> None:
        """pynetdicom's connection-closed handler."""
        self.closed(caller(event))

    def closed(self, caller: Caller) -> None:
        """Forget what an association stored (each study was audited when it arrived)."""
        with self._received_lock:
            self._received.pop(caller.association, None)


def _spooled(received: ReceivedObject) -> Path:
    assert received.path is not None, "a received object has its file or its bytes"
    return received.path


def _readable(source: Path | bytes) -> Path | BytesIO:
    """What the readers of a received object take: its file, or its bytes as a file."""
    return BytesIO(source) if isinstance(source, bytes) else source


__all__ = ["StorageScp"]
