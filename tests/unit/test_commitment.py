"""Storage commitment as a use case: the request is queued, the result comes from the index."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pacsflow.domain.commitment import (
    CommitmentFailure,
    CommitmentResult,
    FailedReference,
    InstanceReference,
)
from pacsflow.domain.errors import InvalidInput
from pacsflow.domain.jobs import Job, JobState, NewJob
from pacsflow.domain.uids import Uid, new_uid
from pacsflow.workflow.commitment import STORAGE_COMMITMENT_JOB, StorageCommitment
from pacsflow.workflow.ingest import Ingest, IngestStatus
from tests import factories as f
from tests.fakes import FixedClock, InMemoryBlobStore, memory_uow

_AT = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)


class _Reporter:
    def __init__(self) -> None:
        self.sent: list[tuple[str, CommitmentResult]] = []

    def report_commitment(self, requestor: str, result: CommitmentResult) -> None:
        self.sent.append((requestor, result))


class _Queue:
    def __init__(self) -> None:
        self.jobs: list[NewJob] = []

    def enqueue(self, job: NewJob) -> int:
        self.jobs.append(job)
        return len(self.jobs)


def _as_run(job: NewJob) -> Job:
    """The job as a worker claims it."""
    return Job(1, job.kind, job.payload, JobState.RUNNING, 1, _AT, _AT, job.destination)


def test_report_names_stored_instances_committed_and_unknown_ones_failed() -> None:
    uow = memory_uow()
    arrived = f.arrived(f.received())
    stored = Ingest(uow, InMemoryBlobStore(), FixedClock()).receive(arrived, b"DICM")
    assert stored.status is IngestStatus.STORED
    queue, reporter = _Queue(), _Reporter()
    commitment = StorageCommitment(uow, queue.enqueue, reporter)
    held = InstanceReference(arrived.instance.sop_class_uid, arrived.instance.sop_instance_uid)
    missing = InstanceReference(arrived.instance.sop_class_uid, new_uid())
    transaction = new_uid()

    commitment.request("MODALITY", transaction, [held, missing])
    [job] = queue.jobs
    assert (job.kind, job.destination) == (STORAGE_COMMITMENT_JOB, "MODALITY")
    assert reporter.sent == []  # reported by the job, not while the request is answered
    commitment.report(_as_run(job))

    assert reporter.sent == [
        (
            "MODALITY",
            CommitmentResult(
                Uid(transaction),
                (held,),
                (FailedReference(missing, CommitmentFailure.UNKNOWN_INSTANCE),),
            ),
        )
    ]


def test_request_without_transaction_uid_is_refused_and_queues_nothing() -> None:
    queue = _Queue()
    commitment = StorageCommitment(memory_uow(), queue.enqueue, _Reporter())
    with pytest.raises(InvalidInput):
        commitment.request("MODALITY", "", [InstanceReference("1.2.3", new_uid())])
    assert queue.jobs == []
