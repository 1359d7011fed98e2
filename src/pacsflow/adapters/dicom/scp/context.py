"""What every DICOM service handler shares: who calls, whether it may, and the audit trail."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom.events import Event

from pacsflow.adapters.dicom import status
from pacsflow.adapters.dicom.fastpath.session import Caller
from pacsflow.domain import audit as atna
from pacsflow.domain import audit_events as atna_events
from pacsflow.domain.access import DicomOperation, PeerRights, dicom_allows
from pacsflow.domain.errors import Forbidden, PacsflowError
from pacsflow.workflow.audit import AuditTrail
from pacsflow.workflow.ports.clock import Clock

log = logging.getLogger(__name__)

RightsLookup = Callable[[str], PeerRights | None]
#: What an N-service handler answers: the status, and the attributes of the reply.
NReply = tuple[int | Dataset, Dataset | None]


@dataclass(frozen=True, slots=True)
class ScpContext:
    """The called AE, the rights of calling AEs, where audit records go, and the clock (its zone
    is the site's: worklist dates are in it)."""

    ae_title: str
    rights: RightsLookup
    is_open: bool
    audit: AuditTrail | None
    clock: Clock

    def check(self, event: Event, operation: DicomOperation) -> str:
        """The calling AE title, once it is allowed to perform the operation."""
        return self.allow(str(event.assoc.requestor.ae_title).strip(), operation)

    def allow(self, caller: str, operation: DicomOperation) -> str:
        """The calling AE title, once it is allowed to perform the operation."""
        if not dicom_allows(operation, self.rights(caller), is_open=self.is_open):
            log.warning("refused %s from calling AE %r: not a configured peer", operation, caller)
            raise Forbidden(f"calling AE {caller} may not {operation.value}")
        return caller

    def record(self, event: atna.AuditEvent) -> None:
        """Record an audit event (when auditing is on)."""
        if self.audit is not None:
            self.audit.record(event)

    def audit_query(self, event: Event, model: str, query: Dataset, outcome: int) -> None:
        """Audit a C-FIND: its keys as text, its information model and outcome."""
        if self.audit is None:
            return
        text = ", ".join(
            f"{e.keyword}={e.value}" for e in query if e.keyword and e.VR != "SQ" and e.value
        )
        self.record(
            atna_events.query(
                self.audit.source,
                participant(caller(event)),
                self.clock.now(),
                query_text=text,
                sop_class_uid=model,
                outcome=atna.Outcome(outcome),
            )
        )


def caller(event: Event) -> Caller:
    """The calling side of the association that raised a pynetdicom event."""
    requestor = event.assoc.requestor
    return Caller(str(requestor.ae_title).strip(), str(requestor.address), id(event.assoc))


def participant(caller: Caller) -> atna.ActiveParticipant:
    """The calling AE as an audit participant (AE title and network address)."""
    return atna.ActiveParticipant(
        user_id=caller.ae_title, is_requestor=True, network_access_point=caller.address
    )


def n_service_reply(request: str, handle: Callable[[], NReply]) -> NReply:
    """Run an N-service request's handling; a refusal or failure becomes its status."""
    try:
        return handle()
    except PacsflowError as exc:
        log.warning("%s refused: %s", request, exc)
        return status.failure(status.n_service_status(exc), str(exc)), None
    except Exception:  # an entry handler: answer a failure, keep serving
        log.exception("%s failed", request)
        return status.PROCESSING_FAILURE, None


def request_uid(event: Event, keyword: str) -> str:
    """A UID parameter of the DIMSE request that raised the event ('' when absent)."""
    return str(getattr(event.request, keyword, "") or "").strip()


__all__ = [
    "NReply",
    "RightsLookup",
    "ScpContext",
    "caller",
    "n_service_reply",
    "participant",
    "request_uid",
]
