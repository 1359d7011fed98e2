"""What the use cases need from the outside world: repositories, blobs, a clock."""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Protocol

from pacsflow.domain.access import Role
from pacsflow.domain.exception_queue import ExceptionHistory
from pacsflow.domain.jobs import Job, JobState, NewJob, QueueStats
from pacsflow.domain.matching import ExceptionReason, MismatchSource, ReceivedIdentity
from pacsflow.domain.orders import AccessionNumber, Order, OrderStatus
from pacsflow.domain.patients import Patient, PatientIdentifier
from pacsflow.domain.reading import Claim, ReadingItem
from pacsflow.domain.rejections import Rejection, RejectionReason
from pacsflow.domain.reports import Report, ReportStatus
from pacsflow.domain.uids import Uid
from pacsflow.workflow.audit import AuditLog


class Clock(Protocol):
    """Tells the time (UTC, timezone-aware)."""

    def now(self) -> datetime:
        """The current time."""
        ...


class BlobStore(Protocol):
    """Immutable object storage for received files."""

    def put_file(self, key: str, source: Path) -> int:
        """Durably store the file at source under key, taking source (moved when possible,
        else copied and removed); its size. On failure nothing is left under key, and
        StorageFull says that no space is left."""
        ...

    def put_bytes(self, key: str, data: bytes) -> int:
        """Durably store data under key; its size (on failure nothing is left under key)."""
        ...

    def open(self, key: str) -> BinaryIO:
        """Open a stored object for reading."""
        ...

    def local_path(self, key: str) -> Path | None:
        """A local filesystem path for the object, when the store has one."""
        ...

    def exists(self, key: str) -> bool:
        """True when an object is stored under key."""
        ...

    def delete(self, key: str) -> None:
        """Remove an object that was never indexed (an orphan); absent keys are ignored."""
        ...


class MessageStatus(enum.StrEnum):
    """Where an inbound interface message stands in the journal."""

    RECEIVED = "received"
    APPLIED = "applied"
    REJECTED = "rejected"
    FAILED = "failed"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """An interface message as received, before it is applied."""

    raw: bytes
    peer: str
    sending_application: str = ""
    sending_facility: str = ""
    control_id: str = ""
    message_type: str = ""
    #: What a retransmission of this message keeps (set by the adapter); "" when unknown.
    digest: str = ""


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A journaled inbound message and, once answered, the answer it got."""

    id: int
    received_at: datetime
    message: InboundMessage
    status: MessageStatus
    ack: bytes = b""
    error: str = ""
    #: The earlier entry whose control id this different message reused, if any.
    reuses: int | None = None


class MessageJournal(Protocol):
    """Durable record of every inbound interface message."""

    def add(
        self, message: InboundMessage, received_at: datetime, *, reuses: int | None = None
    ) -> int:
        """Journal a message as received (`reuses`: the entry whose control id it reuses)."""
        ...

    def find_answered(self, message: InboundMessage) -> JournalEntry | None:
        """The applied or rejected entry this message repeats, if any.

        Same sender, control id and digest; an entry journaled without a digest matches on
        sender and control id alone.
        """
        ...

    def find_reused(self, message: InboundMessage) -> JournalEntry | None:
        """The latest applied or rejected entry with this sender and control id, any content."""
        ...

    def settle(self, entry_id: int, status: MessageStatus, ack: bytes, error: str = "") -> None:
        """Record how a journaled message was answered."""
        ...

    def get(self, entry_id: int) -> JournalEntry | None:
        """One journal entry."""
        ...


class PatientRepository(Protocol):
    """Registered patients, found by any of their identifiers."""

    def find(self, identifier: PatientIdentifier) -> Patient | None:
        """The patient holding this identifier (issuer optional when unambiguous).

        Its own identifiers come first (the primary, the others, then the aliases merged or
        changed away), followed by the identifiers of every patient linked to it (A24).
        """
        ...

    def save(self, patient: Patient, at: datetime) -> None:
        """Insert or update a patient (matched by its primary identifier)."""
        ...

    def merge(self, merged: PatientIdentifier, survivor: PatientIdentifier, at: datetime) -> bool:
        """Fold the patient holding `merged` into the survivor: identifiers, orders, studies.

        An unknown merged identifier becomes an alias of the survivor (images may still come);
        merging what is already merged changes nothing. False when nothing changed. Links of
        the merged patient become links of the survivor.
        """
        ...

    def link(self, patient: PatientIdentifier, linked: PatientIdentifier, at: datetime) -> bool:
        """Link two registered patients as one person; nothing moves. False if already so."""
        ...

    def unlink(self, patient: PatientIdentifier, unlinked: PatientIdentifier) -> bool:
        """Remove the link between two patients. False when they were not linked directly."""
        ...

    def change_identifier(
        self, incorrect: PatientIdentifier, correct: PatientIdentifier, at: datetime
    ) -> bool:
        """Replace an identifier on its patient; orders and studies carrying it follow.

        The incorrect identifier stays as an alias (late images still find the patient); a
        correct one that is an alias of the same patient (changing back) is its identifier
        again. When only the correct one is known, the incorrect one becomes its alias. False
        when nothing changed (repeated, or neither is known). Both known on two patients is
        the caller's conflict to refuse before calling.
        """
        ...

    def is_alias(self, identifier: PatientIdentifier) -> bool:
        """True when the identifier was merged or changed away: an alias of another record."""
        ...


@dataclass(frozen=True, slots=True)
class WorklistFilter:
    """Exact values and a start window the store can filter on before finer matching."""

    station_ae: str = ""
    modality: str = ""
    accession_number: str = ""
    patient_id: str = ""
    start_from: datetime | None = None
    start_to: datetime | None = None


class OrderRepository(Protocol):
    """Imaging orders."""

    def by_accession(self, accession: AccessionNumber) -> Order | None:
        """The order with this accession number."""
        ...

    def by_study_uid(self, study_uid: Uid) -> Order | None:
        """The order that reserved this Study Instance UID."""
        ...

    def save(self, order: Order, at: datetime) -> None:
        """Insert or update an order (matched by accession number)."""
        ...

    def on_worklist(self, flt: WorklistFilter | None = None) -> Sequence[Order]:
        """Orders a modality may still pick up (narrowed by the filter when given)."""
        ...

    def list(self, *, status: OrderStatus | None = None, limit: int = 100) -> Sequence[Order]:
        """Orders, newest first."""
        ...


class StudyState(enum.StrEnum):
    """Whether a study is visible to clinical use."""

    PUBLISHED = "published"
    HELD = "held"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class StudyRecord:
    """An indexed study: received identity, match result and visibility."""

    study_instance_uid: Uid
    state: StudyState
    received: ReceivedIdentity
    patient: PatientIdentifier | None
    accession_number: str
    study_date: date | None = None
    study_time: str = ""
    study_description: str = ""
    study_id: str = ""
    referring_physician: str = ""
    modalities: tuple[str, ...] = ()
    body_parts: tuple[str, ...] = ()  # BodyPartExamined of its series
    series_count: int = 0
    instance_count: int = 0
    received_at: datetime | None = None
    source_ae: str = ""


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """One stored instance and where its study/series stand."""

    study_instance_uid: Uid
    series_instance_uid: Uid
    sop_instance_uid: Uid
    sop_class_uid: Uid
    transfer_syntax_uid: Uid
    blob_key: str
    size: int
    series_number: str = ""
    series_description: str = ""
    modality: str = ""
    body_part: str = ""
    instance_number: str = ""
    series_date: str = ""
    series_time: str = ""


@dataclass(frozen=True, slots=True)
class ArrivedInstance:
    """An instance that arrived, with the study attributes the index keeps."""

    identity: ReceivedIdentity
    instance: InstanceRecord
    study_date: date | None = None
    study_time: str = ""
    study_description: str = ""
    study_id: str = ""
    referring_physician: str = ""
    source_ae: str = ""
    rejection: Rejection | None = None  # set when the instance is an IOCM rejection note


@dataclass(frozen=True, slots=True)
class RejectionRecord:
    """An instance hidden by a rejection note: why, when, and which note (kept, not deleted)."""

    sop_instance_uid: Uid
    series_instance_uid: Uid
    study_instance_uid: Uid
    reason: RejectionReason
    rejected_at: datetime
    rejected_by: Uid  # the SOP Instance UID of the rejection note


@dataclass(frozen=True, slots=True)
class ArrivalView:
    """What the index holds about an arriving instance and its study, before indexing it."""

    rejection: RejectionRecord | None  # set when a rejection note rejected the instance
    is_indexed: bool  # the instance is already indexed (a duplicate)
    study: StudyRecord | None  # its study without counts and modalities, if indexed
    has_visible_instance: bool  # the study has an instance neither rejected nor a note


@dataclass(frozen=True, slots=True)
class HoldReason:
    """Why an exception holds its study, and the identity that was matched (undo restores it)."""

    reason: ExceptionReason
    source: MismatchSource
    detail: str
    received: ReceivedIdentity
    candidate_order: AccessionNumber | None = None


@dataclass(frozen=True, slots=True)
class ExceptionRecord:
    """A study held for reconciliation."""

    id: int
    study_instance_uid: Uid
    reason: ExceptionReason
    source: MismatchSource
    detail: str
    opened_at: datetime
    received: ReceivedIdentity
    candidate_order: AccessionNumber | None = None
    resolved_at: datetime | None = None
    resolution: str = ""
    owner: str = ""  # the username working it; empty: nobody yet


@dataclass(frozen=True, slots=True)
class StudyFilter:
    """Exact-value filters the index can apply before finer matching.

    `patient` selects the studies of the patient holding that identifier and of every patient
    linked to it; an identifier merged or changed away (an alias) selects nothing.
    """

    patient: PatientIdentifier | None = None
    study_instance_uids: tuple[Uid, ...] = ()
    accession_number: str = ""
    is_published_only: bool = True
    limit: int = 1000
    received_from: datetime | None = None  # first instance received at or after
    received_until: datetime | None = None  # ... and before


class StudyRepository(Protocol):
    """The index of studies, series and instances."""

    def get(self, study_uid: Uid) -> StudyRecord | None:
        """One study."""
        ...

    def head(self, study_uid: Uid) -> StudyRecord | None:
        """One study without its counts and modalities (cheap: the ingest hot path)."""
        ...

    def has_visible_instance(self, study_uid: Uid) -> bool:
        """True when the study has an instance that is neither rejected nor a rejection note."""
        ...

    def has_instance(self, sop_uid: Uid) -> bool:
        """True when the instance is already indexed."""
        ...

    def view_arrival(self, sop_uid: Uid, study_uid: Uid) -> ArrivalView:
        """Rejection, duplicate and study of an arriving instance in one look (the ingest path)."""
        ...

    def add_instance(self, arrived: ArrivedInstance, at: datetime) -> None:
        """Index an instance, creating its study and series when new."""
        ...

    def set_match(
        self,
        study_uid: Uid,
        state: StudyState,
        patient: PatientIdentifier | None,
        accession: str,
    ) -> None:
        """Record which patient and order a study belongs to, and whether it is visible."""
        ...

    def find(self, flt: StudyFilter) -> Sequence[StudyRecord]:
        """Studies passing the filter, newest first.

        Counts and modalities cover visible instances only (neither rejected nor rejection
        notes); with is_published_only, a study with no visible instance is not listed.
        """
        ...

    def instances(
        self,
        *,
        study_uids: Sequence[Uid] = (),
        series_uids: Sequence[Uid] = (),
        sop_uids: Sequence[Uid] = (),
        is_published_only: bool = True,
    ) -> Sequence[InstanceRecord]:
        """Visible instances of the given studies/series (all when none given)."""
        ...

    def last_received(self, study_uid: Uid) -> datetime | None:
        """When the study's newest instance arrived."""
        ...

    def instance(self, sop_uid: Uid) -> InstanceRecord | None:
        """One visible instance (None when rejected or a rejection note)."""
        ...

    def reject(self, rejection: Rejection, at: datetime) -> frozenset[Uid]:
        """Hide the instances a rejection note names, stored or still to come.

        An instance already rejected keeps its first rejection. The studies whose stored
        instances were hidden now.
        """
        ...

    def rejection(self, sop_uid: Uid) -> RejectionRecord | None:
        """How an instance was rejected, if it was."""
        ...

    def series_study(self, series_uid: Uid) -> Uid | None:
        """The study a series is indexed under (None when no such series)."""
        ...

    def copy_study(self, source_uid: Uid, new_uid: Uid, at: datetime) -> None:
        """Index a new study without series: the source's received identity and attributes,
        held, belonging to nobody yet (a split fills and matches it)."""
        ...

    def move_series(self, series_uid: Uid, target_uid: Uid) -> None:
        """File a series, its instances and their rejection records under another study.

        Index only: the stored objects stay as received (the Study Instance UID is coerced
        from the index when they leave).
        """
        ...

    def remove_study(self, study_uid: Uid) -> None:
        """Remove a study that has no series left, with its exceptions, from the index."""
        ...


class ExceptionRepository(Protocol):
    """The exceptions queue."""

    def open_for(self, study_uid: Uid) -> ExceptionRecord | None:
        """The open exception of a study, if any."""
        ...

    def add(
        self,
        study_uid: Uid,
        reason: ExceptionReason,
        source: MismatchSource,
        detail: str,
        received: ReceivedIdentity,
        candidate_order: AccessionNumber | None,
        at: datetime,
    ) -> int:
        """Open an exception; its id."""
        ...

    def list_open(self, limit: int = 500) -> Sequence[ExceptionRecord]:
        """Open exceptions, oldest first."""
        ...

    def open_explained_by(
        self, *, accession: str = "", study_uid: str = "", patient_ids: Sequence[str] = ()
    ) -> Sequence[ExceptionRecord]:
        """Open exceptions whose received accession, study UID or patient ID is one of these."""
        ...

    def resolve(self, exception_id: int, at: datetime, resolution: str) -> None:
        """Close an exception, saying how it was resolved."""
        ...

    def get(self, exception_id: int) -> ExceptionRecord | None:
        """One exception, open or resolved."""
        ...

    def reopen(self, exception_id: int) -> None:
        """Open a resolved exception again (undo)."""
        ...

    def set_owner(self, exception_id: int, owner: str) -> None:
        """Name who works an exception (empty: nobody)."""
        ...

    def rehold(self, exception_id: int, hold: HoldReason) -> None:
        """Say anew why an open exception holds its study (its identifiers were corrected)."""
        ...


class ExceptionIndex(Protocol):
    """Searches the exceptions queue needs beyond the repositories: candidates, history."""

    def candidate_orders(
        self,
        *,
        accessions: Sequence[str] = (),
        patient_ids: Sequence[str] = (),
        scheduled_from: datetime | None = None,
        scheduled_to: datetime | None = None,
        limit: int = 100,
    ) -> Sequence[AccessionNumber]:
        """Orders not cancelled with one of these accession numbers, of one of these patient
        IDs, or scheduled in the window (each criterion capped at limit)."""
        ...

    def candidate_patients(
        self,
        *,
        identifiers: Sequence[str] = (),
        names: Sequence[str] = (),
        birth_dates: Sequence[date] = (),
        limit: int = 100,
    ) -> Sequence[PatientIdentifier]:
        """Primary identifiers of patients holding one of these identifiers (any case), whose
        family and given names are both among names (any case, either way round), or born on
        one of these dates (each criterion capped at limit)."""
        ...

    def histories(self, start: datetime, end: datetime) -> Sequence[ExceptionHistory]:
        """Every exception opened before end that was open at some time from start on, with
        its reconciliation actions before end."""
        ...


@dataclass(frozen=True, slots=True)
class ReconciliationAction:
    """What a person did to a study or its exception, with what was before (for undo).

    exception_id is the exception acted on (None for a study without an open exception);
    opened_exception_id one the action opened. A split names the series it moved, the study
    it moved it to, and whether it created that study.
    """

    id: int
    exception_id: int | None
    study_instance_uid: Uid
    action: str
    actor: str
    at: datetime
    detail: str
    before_state: StudyState
    before_patient: PatientIdentifier | None
    before_accession: str
    undone_at: datetime | None = None
    before_owner: str = ""
    before_hold: HoldReason | None = None
    opened_exception_id: int | None = None
    series_instance_uid: Uid | None = None
    target_study_uid: Uid | None = None
    is_new_target: bool = False


class ReconciliationLog(Protocol):
    """The record of reconciliation actions."""

    def add(self, action: ReconciliationAction) -> int:
        """Record an action; its id."""
        ...

    def get(self, action_id: int) -> ReconciliationAction | None:
        """One action."""
        ...

    def mark_undone(self, action_id: int, at: datetime) -> None:
        """Record that an action was undone."""
        ...

    def later(self, action_id: int, study_uids: Sequence[Uid]) -> Sequence[ReconciliationAction]:
        """Actions after this one, not undone, on (or splitting into) any of these studies."""
        ...

    def has_actions(self, exception_id: int) -> bool:
        """True when any action (undone or not) was recorded on the exception."""
        ...


class MatchOutcomeKind(enum.StrEnum):
    """How a study's matching ended, for the KPIs."""

    AUTO_MATCHED = "auto_matched"
    PRIOR = "prior"  # fetched from an archive as a prior of a registered patient
    LATE_MATCHED = "late_matched"
    RECONCILED = "reconciled"
    HELD = "held"


class EventLog(Protocol):
    """Timestamped workflow outcomes the KPIs are computed from."""

    def record_match(
        self,
        study_uid: Uid,
        kind: MatchOutcomeKind,
        at: datetime,
        reason: ExceptionReason | None = None,
        source: MismatchSource | None = None,
    ) -> None:
        """Record how a study's matching ended."""
        ...

    def record_order_event(self, accession: AccessionNumber, event: str, at: datetime) -> None:
        """Record an order lifecycle event (placed, changed, cancelled, status)."""
        ...


@dataclass(frozen=True, slots=True)
class PerformedStep:
    """A Modality Performed Procedure Step as reported by the modality."""

    sop_instance_uid: Uid
    status: str
    accession_number: str = ""
    study_instance_uid: str = ""
    performed_station_ae: str = ""


class ProcedureStepRepository(Protocol):
    """Performed procedure steps (MPPS)."""

    def get(self, sop_uid: Uid) -> PerformedStep | None:
        """One performed step."""
        ...

    def add(self, step: PerformedStep, at: datetime) -> bool:
        """Record a new performed step; False when one with its SOP Instance UID exists."""
        ...

    def save(self, step: PerformedStep, at: datetime) -> None:
        """Insert or update a performed step."""
        ...


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user or system account as stored: roles and a password hash (never the password)."""

    username: str
    roles: frozenset[Role]
    password_hash: str = ""
    is_disabled: bool = False


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """An API token as stored: its public id and the hash of its secret."""

    token_id: str
    username: str
    secret_hash: str
    name: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class AccountRepository(Protocol):
    """Users and their API tokens."""

    def user(self, username: str) -> UserRecord | None:
        """One user."""
        ...

    def add_user(self, user: UserRecord, at: datetime) -> None:
        """Create a user (the username must be new)."""
        ...

    def users(self) -> Sequence[UserRecord]:
        """Every user, by name."""
        ...

    def token(self, token_id: str) -> TokenRecord | None:
        """One token by its public id."""
        ...

    def add_token(self, token: TokenRecord) -> None:
        """Store a new token."""
        ...

    def revoke_token(self, token_id: str, at: datetime) -> bool:
        """Revoke a token; False when there is no such live token."""
        ...


class SecretHasher(Protocol):
    """Slow, salted hashing of passwords and token secrets (argon2 in production)."""

    def hash(self, secret: str) -> str:
        """A self-describing hash of the secret."""
        ...

    def verify(self, hashed: str, secret: str) -> bool:
        """True when the secret matches the hash."""
        ...


class JobQueue(Protocol):
    """Durable jobs: enqueued beside the event that causes them, claimed under a lease."""

    def enqueue(self, job: NewJob, now: datetime) -> int:
        """Add a pending job (due at job.run_at, or now); its id."""
        ...

    def expedite(self, ordering_key: str, now: datetime, payload: Mapping[str, object]) -> int:
        """Make the pending jobs with this ordering key due now, merging payload into theirs;
        how many there were."""
        ...

    def enqueue_or_extend(
        self, job: NewJob, list_key: str, item: object, max_items: int, now: datetime
    ) -> int:
        """Append item to the list payload[list_key] of a pending job of the same kind and
        ordering key that has room, or enqueue job with [item]; the job's id.

        Safe against a concurrent claim: the pending job is locked while it is extended.
        """
        ...

    def due(self, now: datetime, kinds: Collection[str]) -> bool:
        """True when some job of these kinds could be claimed now (a cheap read)."""
        ...

    def claim(
        self,
        worker: str,
        now: datetime,
        lease: timedelta,
        *,
        kinds: Collection[str],
        limit: int,
        destination_limits: Mapping[str, int],
        default_destination_limit: int,
    ) -> list[Job]:
        """Lease up to limit due jobs to worker, oldest first, counting an attempt on each.

        Due: pending with run_at reached, or running with an expired lease (its worker died).
        A job waits while an older job with its ordering key is unfinished, and while its
        destination already has its limit of running jobs.
        """
        ...

    def renew(self, ids: Collection[int], worker: str, until: datetime) -> None:
        """Extend the leases worker still holds."""
        ...

    def finish(self, job_id: int, worker: str, now: datetime) -> bool:
        """Mark a leased job done; False when the lease was lost (another worker has it)."""
        ...

    def retry(self, job_id: int, worker: str, error: str, run_at: datetime) -> bool:
        """Put a leased job back to pending until run_at, keeping the error."""
        ...

    def postpone(self, job_id: int, worker: str, run_at: datetime) -> bool:
        """Put a leased job back to pending until run_at without counting the attempt."""
        ...

    def bury(self, job_id: int, worker: str, error: str, now: datetime) -> bool:
        """Dead-letter a leased job with its last error."""
        ...

    def get(self, job_id: int) -> Job | None:
        """One job."""
        ...

    def has_job(
        self, ordering_key: str, *, unfinished_only: bool = True, pending_only: bool = False
    ) -> bool:
        """True when a job has this ordering key (only pending or running ones, by default;
        only pending ones with pending_only)."""
        ...

    def list(
        self, *, state: JobState | None = None, kind: str | None = None, limit: int = 100
    ) -> Sequence[Job]:
        """Jobs, newest first."""
        ...

    def replay(self, job_id: int, now: datetime) -> bool:
        """Make a dead-lettered job pending again with fresh attempts; False if not dead."""
        ...

    def stats(self, now: datetime) -> QueueStats:
        """Depth, age and failures."""
        ...


@dataclass(frozen=True, slots=True)
class RuleVersion:
    """One saved version of the routing rules."""

    version: int
    text: str
    author: str
    comment: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Activation:
    """A rule version made active, by whom and when."""

    version: int
    actor: str
    at: datetime


class ForwardState(enum.StrEnum):
    """Where the forwarding of one instance to one destination stands."""

    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ForwardRecord:
    """One instance on its way to (or at) one destination."""

    sop_instance_uid: Uid
    study_instance_uid: Uid
    destination: str
    blob_key: str
    rule_version: int
    state: ForwardState
    queued_at: datetime
    sent_at: datetime | None = None
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class Alert:
    """Something an operator must look at (a routing loop, a study coming back, a full disk)."""

    kind: str
    subject: str
    peer: str
    detail: str
    first_at: datetime
    last_at: datetime
    count: int


class RoutingStore(Protocol):
    """Versioned routing rules, which version is active, and what was forwarded where."""

    def add_version(self, text: str, author: str, comment: str, at: datetime) -> int:
        """Save a new version of the rules; its number."""
        ...

    def version(self, number: int) -> RuleVersion | None:
        """One version."""
        ...

    def versions(self) -> Sequence[RuleVersion]:
        """Every version, newest first."""
        ...

    def activate(self, number: int, actor: str, at: datetime) -> None:
        """Make a version the active one."""
        ...

    def active_version(self) -> int | None:
        """The number of the active version (the latest activated), if any."""
        ...

    def activations(self, limit: int = 100) -> Sequence[Activation]:
        """Activations, newest first (the first is the active version)."""
        ...

    def queue_forward(
        self, instance: InstanceRecord, destination: str, rule_version: int, at: datetime
    ) -> bool:
        """Record that this content of the instance goes to destination; False if it already
        was (each instance goes to a destination once per version of its content)."""
        ...

    def settle_forward(
        self, sop_uid: Uid, destination: str, state: ForwardState, at: datetime, error: str = ""
    ) -> None:
        """Record how sending one instance to a destination ended."""
        ...

    def forwards(self, study_uid: Uid) -> Sequence[ForwardRecord]:
        """What was forwarded where for a study."""
        ...

    def pending_forwards(self, destination: str, limit: int) -> Sequence[ForwardRecord]:
        """Forwards still queued for a destination, oldest first."""
        ...

    def sent_to(self, sop_uid: Uid) -> Sequence[str]:
        """The destinations the instance was sent to."""
        ...

    def raise_alert(self, kind: str, subject: str, peer: str, detail: str, at: datetime) -> None:
        """Record an alert, or count one more occurrence of the same kind/subject/peer."""
        ...

    def alerts(self, limit: int = 100) -> Sequence[Alert]:
        """Alerts, most recent first."""
        ...


class PriorState(enum.StrEnum):
    """Where the prefetch of one prior study stands."""

    LOCAL = "local"  # already in the local index: nothing to fetch
    QUEUED = "queued"
    RETRIEVING = "retrieving"
    DONE = "done"
    FAILED = "failed"  # the last attempt failed; the job retries until dead-lettered


@dataclass(frozen=True, slots=True)
class PriorRecord:
    """One prior study chosen for a prefetch request, and how its retrieval went."""

    request_key: str
    study_instance_uid: Uid
    archive: str
    patient: PatientIdentifier
    state: PriorState
    requested_at: datetime
    study_date: date | None = None
    modalities: tuple[str, ...] = ()
    description: str = ""
    completed_at: datetime | None = None
    instances: int = 0
    last_error: str = ""

    @property
    def latency(self) -> float | None:
        """Seconds from the request to the prior being local."""
        if self.completed_at is None:
            return None
        return (self.completed_at - self.requested_at).total_seconds()


class PrefetchStore(Protocol):
    """Prefetch requests: which priors were chosen for what, and their retrieval."""

    def add(self, record: PriorRecord) -> bool:
        """Record a chosen prior; False when this request already has this study."""
        ...

    def expected_patient(self, study_uid: Uid) -> PatientIdentifier | None:
        """The patient a study is being fetched for (it arrives as a prior, not an exam)."""
        ...

    def update(
        self,
        request_key: str,
        study_uid: Uid,
        state: PriorState,
        at: datetime,
        *,
        instances: int = 0,
        error: str = "",
    ) -> None:
        """Record progress of one prior's retrieval."""
        ...

    def list(self, request_key: str | None = None, limit: int = 500) -> Sequence[PriorRecord]:
        """Chosen priors, newest request first."""
        ...


@dataclass(frozen=True, slots=True)
class ReportRecord:
    """A stored report version and the study it is attached to (if any yet)."""

    id: int
    report: Report
    received_at: datetime
    source: str
    attached_study_uid: Uid | None = None
    flag: str = ""  # why it is not attached: unknown study, study held


class DeliveryState(enum.StrEnum):
    """Where sending one result message to one subscriber stands."""

    QUEUED = "queued"
    DELIVERED = "delivered"
    FAILED = "failed"  # refused (AE/AR) or given up; the job says why


@dataclass(frozen=True, slots=True)
class DeliveryStats:
    """How well results reach one subscriber."""

    subscriber: str
    total: int
    delivered: int
    delivered_in_time: int
    failed: int
    pending: int

    @property
    def success_rate(self) -> float | None:
        """Share of settled messages delivered within the target time."""
        settled = self.delivered + self.failed
        return self.delivered_in_time / settled if settled else None


class ReportStore(Protocol):
    """Report versions, their attachment to studies, and result deliveries."""

    def add(self, report: Report, received_at: datetime, source: str, flag: str = "") -> int:
        """Keep a report version; its id."""
        ...

    def get(self, report_id: int) -> ReportRecord | None:
        """One report version."""
        ...

    def attach(self, report_id: int, study_uid: Uid) -> None:
        """Attach a report version to its study (clears the flag)."""
        ...

    def flag(self, report_id: int, reason: str) -> None:
        """Say why a report version is not attached."""
        ...

    def unattached_for(self, study_uid: Uid) -> Sequence[ReportRecord]:
        """Unattached versions naming the study's accession number or Study Instance UID."""
        ...

    def for_study(self, study_uid: Uid) -> Sequence[ReportRecord]:
        """The versions attached to a study, in arrival order."""
        ...

    def statuses(self, study_uids: Sequence[Uid]) -> dict[Uid, ReportStatus]:
        """The report status of each study (unread when it has no report)."""
        ...

    def list(self, *, unattached_only: bool = False, limit: int = 100) -> Sequence[ReportRecord]:
        """Report versions, newest first."""
        ...

    def add_delivery(
        self, subscriber: str, event: str, study_uid: Uid, report_id: int | None, at: datetime
    ) -> int:
        """Record a result message queued for a subscriber; its id."""
        ...

    def settle_delivery(
        self, delivery_id: int, state: DeliveryState, at: datetime, ack_code: str, error: str
    ) -> None:
        """Record how the delivery ended."""
        ...

    def has_delivery(self, subscriber: str, event: str, study_uid: Uid) -> bool:
        """True when this event of this study was ever queued for the subscriber."""
        ...

    def delivery_stats(self, subscriber: str, target_seconds: float) -> DeliveryStats:
        """Counts of one subscriber's deliveries."""
        ...


class ReadingStore(Protocol):
    """What the reading worklist reads and keeps: candidates, triage scores, claims."""

    def candidates(self, study_uids: Sequence[Uid] = ()) -> Sequence[ReadingItem]:
        """Published studies that may still need reading, with order, triage score, last claim.

        Left out: studies in the exceptions queue, priors fetched from archives, and studies
        whose report is final (the caller confirms with the report statuses). Only the named
        studies when some are given. priors_ready is left unknown.
        """
        ...

    def set_triage_score(self, study_uid: Uid, score: float | None) -> bool:
        """Record a study's AI triage score (None clears it); False when there is no such study."""
        ...

    def prior_states(self, request_keys: Sequence[str]) -> dict[str, list[PriorState]]:
        """The states of the priors chosen for each of these prefetch requests that has any."""
        ...

    def unfinished_jobs(self, ordering_keys: Sequence[str]) -> set[str]:
        """Those of these ordering keys that have a pending or running job."""
        ...

    def claim_of(self, study_uid: Uid) -> Claim | None:
        """The last claim on a study (possibly expired)."""
        ...

    def put_claim(self, claim: Claim, now: datetime) -> Claim:
        """Store the claim unless another reader holds an unexpired one; the claim that stands."""
        ...

    def delete_claim(self, study_uid: Uid, reader: str) -> bool:
        """Remove the reader's claim on a study; False when they hold none."""
        ...


class SettingsLog(Protocol):
    """The settings each node started with (secrets redacted), to record their changes."""

    def last(self, node: str) -> str | None:
        """The settings (JSON text) the node last started with."""
        ...

    def save(self, node: str, text: str, at: datetime) -> None:
        """Record the settings a node starts with."""
        ...


class UnitOfWork(Protocol):
    """One atomic transaction over every repository."""

    accounts: AccountRepository
    audit: AuditLog
    reconciliations: ReconciliationLog
    patients: PatientRepository
    orders: OrderRepository
    studies: StudyRepository
    exceptions: ExceptionRepository
    exception_index: ExceptionIndex
    events: EventLog
    journal: MessageJournal
    procedure_steps: ProcedureStepRepository
    jobs: JobQueue
    routing: RoutingStore
    prefetch: PrefetchStore
    reports: ReportStore
    reading: ReadingStore
    settings_log: SettingsLog

    def __enter__(self) -> UnitOfWork:
        """Begin the transaction."""
        ...

    def __exit__(self, *exc: object) -> None:
        """Roll back whatever was not committed."""
        ...

    def commit(self) -> None:
        """Make every change durable."""
        ...


class UnitOfWorkFactory(Protocol):
    """Makes a new unit of work."""

    def __call__(self, *, read_only: bool = False) -> UnitOfWork:
        """A fresh unit of work; read_only promises it will not write (it may run concurrently)."""
        ...


__all__ = [
    "AccountRepository",
    "Activation",
    "Alert",
    "ArrivalView",
    "ArrivedInstance",
    "BlobStore",
    "Clock",
    "DeliveryState",
    "DeliveryStats",
    "EventLog",
    "ExceptionIndex",
    "ExceptionRecord",
    "ExceptionRepository",
    "ForwardRecord",
    "ForwardState",
    "HoldReason",
    "InboundMessage",
    "InstanceRecord",
    "JobQueue",
    "JournalEntry",
    "MatchOutcomeKind",
    "MessageJournal",
    "MessageStatus",
    "OrderRepository",
    "PatientRepository",
    "PerformedStep",
    "PrefetchStore",
    "PriorRecord",
    "PriorState",
    "ProcedureStepRepository",
    "ReadingStore",
    "ReconciliationAction",
    "ReconciliationLog",
    "RejectionRecord",
    "ReportRecord",
    "ReportStore",
    "RoutingStore",
    "RuleVersion",
    "SecretHasher",
    "SettingsLog",
    "StudyFilter",
    "StudyRecord",
    "StudyRepository",
    "StudyState",
    "TokenRecord",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "UserRecord",
    "WorklistFilter",
]
