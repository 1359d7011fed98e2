"""Ingest of an arriving instance: validate, store durably, index, match to order and patient."""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from pacsflow.domain.audit import Action, ActiveParticipant, AuditEvent, AuditSource
from pacsflow.domain.audit_events import instances_transferred, study_object
from pacsflow.domain.errors import InvalidInput, MissingIdentifier, StorageFull
from pacsflow.domain.events import InstanceStored
from pacsflow.domain.matching import (
    ExceptionReason,
    Held,
    Matched,
    MatchOutcome,
    MatchOutcomeKind,
    MismatchSource,
    ReceivedIdentity,
    match_study,
)
from pacsflow.domain.orders import AccessionNumber
from pacsflow.domain.studies import ArrivedInstance, InstanceRecord, StudyRecord, StudyState
from pacsflow.domain.uids import is_valid_uid
from pacsflow.workflow.audit import AuditTrail
from pacsflow.workflow.events import EventBus
from pacsflow.workflow.group_commit import GroupCommit
from pacsflow.workflow.ports.blobs import BlobStore
from pacsflow.workflow.ports.clock import Clock
from pacsflow.workflow.ports.uow import UnitOfWork, UnitOfWorkFactory
from pacsflow.workflow.rejections import apply_rejection, refuse_if_rejected, rejection_event
from pacsflow.workflow.storage_alarm import StorageAlarm

log = logging.getLogger(__name__)


class IngestStatus(enum.StrEnum):
    """What happened to an arriving instance."""

    STORED = "stored"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class IngestResult:
    """The outcome of ingesting one instance; `outcome` is set when its study was matched now."""

    status: IngestStatus
    state: StudyState
    outcome: MatchOutcome | None = None


@dataclass(frozen=True, slots=True)
class _Indexed:
    """One instance indexed in a round: its result, what to audit, what to publish."""

    result: IngestResult
    at: datetime
    audited: list[AuditEvent]
    event: InstanceStored | None = None


class Ingest:
    """Stores and indexes arriving instances and matches new studies."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        blobs: BlobStore,
        clock: Clock,
        events: EventBus | None = None,
        on_duplicate: Sequence[Callable[[ArrivedInstance], None]] = (),
        audit: AuditTrail | None = None,
    ) -> None:
        self._uow = uow
        self._blobs = blobs
        self._clock = clock
        self._events = events or EventBus()
        self._on_duplicate = tuple(on_duplicate)
        self._audit = audit
        self._rounds = GroupCommit(uow, finish=self._finish_round)
        self._alarm = StorageAlarm(uow, clock)

    def receive(
        self,
        arrived: ArrivedInstance,
        source: Path | bytes,
        *,
        requestor: ActiveParticipant | None = None,
        receiver: ActiveParticipant | None = None,
    ) -> IngestResult:
        """Durably store and index an instance (its file, or the file's bytes); idempotent.

        An instance a rejection note rejected is refused (InstanceRejected), stored or not.
        A rejection note is stored like any instance and applied in the same transaction;
        requestor (the sender, for the audit record) defaults to the source AE title. With a
        receiver, the transfer of the instance's study from requestor to receiver (110104)
        is audited in the transaction that indexes it: no instance is stored unaudited.
        An instance refused for lack of space (StorageFull) raises the storage_full alert.
        """
        validate(arrived)
        inst = arrived.instance
        # Stored before the index is asked whether it is new (a rejected instance or a
        # duplicate is then deleted again): one transaction per instance instead of a look
        # first, and no file write or fsync while holding the database's write lock.
        key = f"{inst.study_instance_uid}/{inst.sop_instance_uid}.{uuid.uuid4().hex[:12]}.dcm"
        try:
            size = (
                self._blobs.put_bytes(key, source)
                if isinstance(source, bytes)
                else self._blobs.put_file(key, source)
            )
        except StorageFull as exc:
            self.refused_for_space(arrived.source_ae, exc)
            raise
        stored = replace(arrived, instance=_with_blob(arrived, key, size))
        sender = requestor or ActiveParticipant(user_id=arrived.source_ae, is_requestor=True)
        try:
            result = self._index(arrived, stored, sender, receiver)
        except BaseException as exc:
            self._blobs.delete(key)  # never indexed: leave no orphan behind
            if isinstance(exc, StorageFull):  # the database has no space left
                self.refused_for_space(arrived.source_ae, exc)
            raise
        self._alarm.flush()  # an alert that could not be recorded while the disk was full
        if result.status is IngestStatus.DUPLICATE:
            self._blobs.delete(key)  # stored once: the copy indexed first stays
            for hook in self._on_duplicate:  # after the transaction: hooks may write
                hook(arrived)
        return result

    def refused_for_space(self, source_ae: str, error: StorageFull) -> None:
        """An instance from source_ae was refused because no space is left: alert."""
        self._alarm.refused(source_ae, str(error))

    def _index(
        self,
        arrived: ArrivedInstance,
        stored: ArrivedInstance,
        sender: ActiveParticipant,
        receiver: ActiveParticipant | None,
    ) -> IngestResult:
        # Instances arriving together (several associations) share one transaction.
        indexed = self._rounds.run(
            lambda uow: self._index_in(uow, arrived, stored, sender, receiver)
        )
        if self._audit is not None:
            for event in indexed.audited:
                self._audit.forward(event)
        return indexed.result

    def _finish_round(self, uow: UnitOfWork, pieces: Sequence[object]) -> None:
        """Publish what the round stored (work it causes, same transaction), then audit it."""
        indexed = [p for p in pieces if isinstance(p, _Indexed)]
        # One batch per round: subscribers read a study's facts once, not per instance.
        self._events.publish(uow, [p.event for p in indexed if p.event is not None])
        for piece in indexed:  # last before commit: the audit chain head stays locked briefly
            for event in piece.audited:
                uow.audit.append(event, piece.at)

    def _index_in(
        self,
        uow: UnitOfWork,
        arrived: ArrivedInstance,
        stored: ArrivedInstance,
        sender: ActiveParticipant,
        receiver: ActiveParticipant | None,
    ) -> _Indexed:
        """Index one stored instance in uow (not committed), without publishing or auditing."""
        inst = arrived.instance
        audited: list[AuditEvent] = []
        # One look: rejected? indexed already? the study's row (not its counts: they
        # would scan every instance, per instance).
        view = uow.studies.view_arrival(inst.sop_instance_uid, inst.study_instance_uid)
        refuse_if_rejected(view.rejection)
        existing = view.study
        if view.is_indexed:  # sent again, or a twin won the race
            state = existing.state if existing else StudyState.HELD
            return _Indexed(IngestResult(IngestStatus.DUPLICATE, state), self._clock.now(), [])
        # A study left with no visible instance by rejections (not one rejected whole):
        # its next instance is matched like the first of a new study, since what made it
        # published or held was rejected with the instances (IOCM).
        starts_over = (
            existing is not None
            and existing.state is not StudyState.REJECTED
            and not view.has_visible_instance
        )
        now = self._clock.now()
        uow.studies.add_instance(stored, now)
        prior_of = (
            uow.prefetch.expected_patient(inst.study_instance_uid) if existing is None else None
        )
        if arrived.rejection is not None:
            # A control object: it neither matches nor holds the study it is filed in.
            outcome = None
            state = existing.state if existing else StudyState.HELD
        elif prior_of is not None:
            # Fetched as a prior of a registered patient: no exam to match, published
            # under the patient it was fetched for.
            outcome = None
            state = StudyState.PUBLISHED
            uid = inst.study_instance_uid
            uow.studies.set_match(uid, state, prior_of, arrived.identity.accession_number)
            uow.events.record_match(uid, MatchOutcomeKind.PRIOR, now)
        elif existing is None or starts_over:
            outcome = self._match_new_study(uow, arrived.identity)
            state = StudyState.PUBLISHED if isinstance(outcome, Matched) else StudyState.HELD
        else:
            outcome = None
            state = self._check_consistent(uow, existing, arrived.identity)
        source = self._audit.source if self._audit else AuditSource("pacsflow")
        if receiver is not None:
            audited.append(
                instances_transferred(
                    source,
                    sender,
                    receiver,
                    now,
                    action=Action.CREATE,
                    studies=[study_object(inst.study_instance_uid)],
                )
            )
        result = IngestResult(IngestStatus.STORED, state, outcome)
        if arrived.rejection is not None:
            apply_rejection(uow, arrived.rejection, now)
            audited.append(rejection_event(uow, source, sender, arrived.rejection, now))
            return _Indexed(result, now, audited)
        return _Indexed(result, now, audited, InstanceStored(stored, state, now))

    def _match_new_study(self, uow: UnitOfWork, received: ReceivedIdentity) -> MatchOutcome:
        now = self._clock.now()
        outcome = decide(uow, received)
        uid = received.study_instance_uid
        if isinstance(outcome, Matched):
            uow.studies.set_match(
                uid, StudyState.PUBLISHED, outcome.patient.primary, outcome.order.accession_number
            )
            uow.events.record_match(uid, MatchOutcomeKind.AUTO_MATCHED, now)
        else:
            self._hold(uow, received, outcome)
        return outcome

    def _hold(self, uow: UnitOfWork, received: ReceivedIdentity, held: Held) -> None:
        now = self._clock.now()
        uid = received.study_instance_uid
        patient = held.patient.primary if held.patient else None
        accession = held.order.accession_number if held.order else received.accession_number
        uow.studies.set_match(uid, StudyState.HELD, patient, accession)
        if uow.exceptions.open_for(uid) is None:
            uow.exceptions.add(
                uid,
                held.reason,
                held.source,
                held.detail,
                received,
                held.order.accession_number if held.order else None,
                now,
            )
        uow.events.record_match(uid, MatchOutcomeKind.HELD, now, held.reason, held.source)
        log.info("study held for reconciliation: %s (%s)", held.reason, held.source)

    def _check_consistent(
        self, uow: UnitOfWork, study: StudyRecord, received: ReceivedIdentity
    ) -> StudyState:
        """Hold a study whose later instances disagree with its first about who it belongs to."""
        first = study.received
        if (first.patient.value, first.accession_number) == (
            received.patient.value,
            received.accession_number,
        ):
            return study.state
        held = Held(
            ExceptionReason.STUDY_INCONSISTENT,
            MismatchSource.MODALITY_ENTRY,
            "instances of this study carry different patient IDs or accession numbers",
        )
        if study.state is StudyState.PUBLISHED:
            uow.studies.set_match(
                study.study_instance_uid, StudyState.HELD, study.patient, study.accession_number
            )
        open_now = uow.exceptions.open_for(study.study_instance_uid)
        if open_now is None or open_now.reason is not ExceptionReason.STUDY_INCONSISTENT:
            # Recorded even beside another open problem: a late match must not clear it.
            uow.exceptions.add(
                study.study_instance_uid,
                held.reason,
                held.source,
                held.detail,
                received,
                None,
                self._clock.now(),
            )
        return StudyState.HELD


def decide(uow: UnitOfWork, received: ReceivedIdentity) -> MatchOutcome:
    """Where a study with this received identity belongs, by what the index holds now."""
    by_accession = (
        uow.orders.by_accession(AccessionNumber(received.accession_number))
        if received.accession_number
        else None
    )
    by_uid = None if by_accession else uow.orders.by_study_uid(received.study_instance_uid)
    order = by_accession or by_uid
    return match_study(
        received,
        order_by_accession=by_accession,
        order_by_study_uid=by_uid,
        order_patient=uow.patients.find(order.patient) if order else None,
        received_patient=uow.patients.find(received.patient),
    )


def validate(arrived: ArrivedInstance) -> None:
    """Refuse an instance that cannot be indexed: a missing or malformed UID.

    An empty or absent Patient ID is valid (Type 2): such a study is held, not refused.
    """
    inst = arrived.instance
    for name, value in (
        ("StudyInstanceUID", inst.study_instance_uid),
        ("SeriesInstanceUID", inst.series_instance_uid),
        ("SOPInstanceUID", inst.sop_instance_uid),
    ):
        if not value:
            raise MissingIdentifier(f"{name} is required", location=name)
        if not is_valid_uid(value):
            raise InvalidInput(f"{name} {value!r} is not a valid UID", location=name)


def _with_blob(arrived: ArrivedInstance, key: str, size: int) -> InstanceRecord:
    return replace(arrived.instance, blob_key=key, size=size)


__all__ = ["Ingest", "IngestResult", "IngestStatus", "decide", "validate"]
