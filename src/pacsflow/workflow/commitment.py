"""Storage commitment (push model): accept a request now, report from the index later.

The request is queued durably before it is acknowledged, so a restart cannot lose the
report; the job decides from the index which instances are committed (stored and indexed)
and which failed with what reason, and hands the result to the reporter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from pacsflow.domain.commitment import (
    CommitmentFailure,
    CommitmentResult,
    FailedReference,
    InstanceReference,
)
from pacsflow.domain.errors import InvalidInput
from pacsflow.domain.jobs import Job, NewJob
from pacsflow.domain.uids import Uid
from pacsflow.workflow.ports.commitment import CommitmentReporter
from pacsflow.workflow.ports.uow import UnitOfWorkFactory

log = logging.getLogger(__name__)

#: The job kind of a storage commitment report (run by StorageCommitment.report).
STORAGE_COMMITMENT_JOB = "storage_commitment"


class StorageCommitment:
    """Commitment requests in, commitment results out to their requestors."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        enqueue: Callable[[NewJob], int],
        reporter: CommitmentReporter,
    ) -> None:
        self._uow = uow
        self._enqueue = enqueue
        self._reporter = reporter

    def request(
        self, requestor: str, transaction_uid: str, references: Sequence[InstanceReference]
    ) -> None:
        """Queue the report for a request (durably, before the request is answered)."""
        if not transaction_uid:
            raise InvalidInput("N-ACTION without a Transaction UID")
        refs = [(r.sop_class_uid, str(r.sop_instance_uid)) for r in references]
        self._enqueue(
            NewJob(
                STORAGE_COMMITMENT_JOB,
                {"requestor": requestor, "transaction": transaction_uid, "refs": refs},
                destination=requestor,
            )
        )

    def result(
        self, transaction_uid: Uid, references: Sequence[InstanceReference]
    ) -> CommitmentResult:
        """Which of the referenced instances are committed (in the index), which failed."""
        committed: list[InstanceReference] = []
        failed: list[FailedReference] = []
        with self._uow(read_only=True) as uow:
            for ref in references:
                if uow.studies.has_instance(ref.sop_instance_uid):
                    committed.append(ref)
                else:
                    failed.append(FailedReference(ref, CommitmentFailure.UNKNOWN_INSTANCE))
        return CommitmentResult(transaction_uid, tuple(committed), tuple(failed))

    def report(self, job: Job) -> None:
        """The storage_commitment job: send the result to the requestor (PS3.4 J.3.3).

        A requestor that cannot be reached is retried by the queue, one that is not a
        configured peer is dead-lettered (nowhere to send it).
        """
        requestor = str(job.payload["requestor"])
        transaction = Uid(str(job.payload["transaction"]))
        refs = [InstanceReference(str(c), Uid(str(i))) for c, i in job.payload["refs"]]
        result = self.result(transaction, refs)
        self._reporter.report_commitment(requestor, result)
        log.info(
            "storage commitment %s: %d committed, %d failed",
            transaction,
            len(result.committed),
            len(result.failed),
        )


__all__ = ["STORAGE_COMMITMENT_JOB", "StorageCommitment"]
