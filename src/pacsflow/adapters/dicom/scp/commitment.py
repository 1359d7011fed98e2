"""Storage Commitment Push Model SCP: the N-ACTION request (the report is a queued job)."""

from __future__ import annotations

from pynetdicom.events import Event

from pacsflow.adapters.dicom import status
from pacsflow.adapters.dicom.scp.context import NReply, n_service_reply
from pacsflow.domain.commitment import InstanceReference
from pacsflow.domain.uids import Uid
from pacsflow.workflow.commitment import StorageCommitment

#: Request Storage Commitment, the one action type of the push model (PS3.4 J.3.2).
_REQUEST_COMMITMENT = 1


class CommitmentScp:
    """Accepts commitment requests; StorageCommitment reports on a new association later."""

    def __init__(self, commitment: StorageCommitment) -> None:
        self._commitment = commitment

    def n_action(self, event: Event) -> NReply:
        """The N-ACTION handler: queue the report, then answer success."""

        def request() -> NReply:
            info = event.action_information
            if event.action_type != _REQUEST_COMMITMENT:
                return status.failure(0x0123, "unsupported action type"), None
            refs = [
                InstanceReference(
                    str(item.ReferencedSOPClassUID), Uid(str(item.ReferencedSOPInstanceUID))
                )
                for item in info.get("ReferencedSOPSequence", [])
            ]
            requestor = str(event.assoc.requestor.ae_title).strip()
            # Durably queued before the N-ACTION succeeds: a restart cannot lose the report.
            self._commitment.request(requestor, str(info.get("TransactionUID", "")), refs)
            return status.SUCCESS, None

        return n_service_reply("Storage commitment N-ACTION", request)


__all__ = ["CommitmentScp"]
