"""Audit events (DICOM PS3.15 A.5, the IHE ATNA vocabulary) and their tamper-evident chain.

An event says who (active participants), did what (event ID, action, event type), to what
(participant objects: patients, studies, queries, security resources), when, where (network
access points, audit source) and with which outcome. Each stored event is hashed together
with the hash of the record before it, so altering, removing or reordering a record breaks
the chain from that record on; `verify_chain` finds where.

Only the stdlib: the DICOM XML rendering and the syslog transport live in an adapter.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from pacsflow.domain.errors import ConflictingState
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier

#: The hash the first record of the chain links to.
GENESIS_HASH: Final = "0" * 64

#: Version of the canonical form; a new form gets a new number, old records keep theirs.
CANONICAL_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class Code:
    """A coded value (code, coding scheme designator, meaning), as CodedValueType in A.5.1."""

    code: str
    system: str
    meaning: str


class EventId(enum.StrEnum):
    """What kind of event is audited (PS3.16 CID 400 Audit Event ID, scheme DCM)."""

    APPLICATION_ACTIVITY = "110100"
    AUDIT_LOG_USED = "110101"
    INSTANCES_ACCESSED = "110103"
    INSTANCES_TRANSFERRED = "110104"
    EXPORT = "110106"
    IMPORT = "110107"
    ORDER_RECORD = "110109"
    PATIENT_RECORD = "110110"
    QUERY = "110112"
    SECURITY_ALERT = "110113"
    USER_AUTHENTICATION = "110114"

    @property
    def meaning(self) -> str:
        """The code meaning, as the standard spells it."""
        return _EVENT_MEANINGS[self]

    @property
    def coded(self) -> Code:
        """The event ID as a coded value."""
        return Code(self.value, "DCM", self.meaning)


_EVENT_MEANINGS: Final = {
    EventId.APPLICATION_ACTIVITY: "Application Activity",
    EventId.AUDIT_LOG_USED: "Audit Log Used",
    EventId.INSTANCES_ACCESSED: "DICOM Instances Accessed",
    EventId.INSTANCES_TRANSFERRED: "DICOM Instances Transferred",
    EventId.EXPORT: "Export",
    EventId.IMPORT: "Import",
    EventId.ORDER_RECORD: "Order Record",
    EventId.PATIENT_RECORD: "Patient Record",
    EventId.QUERY: "Query",
    EventId.SECURITY_ALERT: "Security Alert",
    EventId.USER_AUTHENTICATION: "User Authentication",
}


class Action(enum.StrEnum):
    """EventActionCode: what was done to the participant objects."""

    CREATE = "C"
    READ = "R"
    UPDATE = "U"
    DELETE = "D"
    EXECUTE = "E"


class Outcome(enum.IntEnum):
    """EventOutcomeIndicator: one audit message per outcome."""

    SUCCESS = 0
    MINOR_FAILURE = 4
    SERIOUS_FAILURE = 8
    MAJOR_FAILURE = 12


class EventTypes:
    """Event type codes that refine an event ID (PS3.16 CID 401, 403, 405; scheme DCM)."""

    APPLICATION_START: Final = Code("110120", "DCM", "Application Start")
    APPLICATION_STOP: Final = Code("110121", "DCM", "Application Stop")
    LOGIN: Final = Code("110122", "DCM", "Login")
    LOGOUT: Final = Code("110123", "DCM", "Logout")
    NODE_AUTHENTICATION: Final = Code("110126", "DCM", "Node Authentication")
    NETWORK_CONFIGURATION: Final = Code("110128", "DCM", "Network Configuration")
    SECURITY_CONFIGURATION: Final = Code("110129", "DCM", "Security Configuration")
    SOFTWARE_CONFIGURATION: Final = Code("110131", "DCM", "Software Configuration")
    USE_OF_RESTRICTED_FUNCTION: Final = Code("110132", "DCM", "Use of Restricted Function")
    AUDIT_RECORDING_STOPPED: Final = Code("110133", "DCM", "Audit Recording Stopped")
    AUDIT_RECORDING_STARTED: Final = Code("110134", "DCM", "Audit Recording Started")
    SECURITY_ROLES_CHANGED: Final = Code("110136", "DCM", "Security Roles Changed")
    USER_SECURITY_ATTRIBUTES_CHANGED: Final = Code(
        "110137", "DCM", "User security Attributes Changed"
    )


class Roles:
    """Active participant role ID codes (PS3.16 CID 402, scheme DCM)."""

    APPLICATION: Final = Code("110150", "DCM", "Application")
    APPLICATION_LAUNCHER: Final = Code("110151", "DCM", "Application Launcher")
    DESTINATION: Final = Code("110152", "DCM", "Destination Role ID")
    SOURCE: Final = Code("110153", "DCM", "Source Role ID")


@dataclass(frozen=True, slots=True)
class ActiveParticipant:
    """Who took part: a user, an AE title or a process, and from which network node."""

    user_id: str
    alternative_user_id: str = ""
    user_name: str = ""
    is_requestor: bool = False
    network_access_point: str = ""
    role: Code | None = None


@dataclass(frozen=True, slots=True)
class AuditSource:
    """The node that detected and recorded the event (AuditSourceIdentification)."""

    id: str
    enterprise_site: str = ""


class ObjectKind(enum.StrEnum):
    """What a participant object is; fixes its type, role and ID type in the message."""

    PATIENT = "patient"
    STUDY = "study"
    QUERY = "query"
    USER = "user"
    RESOURCE = "resource"


@dataclass(frozen=True, slots=True)
class ParticipantObject:
    """What the event was about: a patient, a study (with accession numbers), a query, ..."""

    kind: ObjectKind
    id: str
    issuer: str = ""
    name: str = ""
    accession_numbers: tuple[str, ...] = ()
    query: str = ""


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audited event: who, what, when, where, outcome (PS3.15 A.5)."""

    event_id: EventId
    action: Action
    outcome: Outcome
    time: datetime
    participants: tuple[ActiveParticipant, ...]
    source: AuditSource
    objects: tuple[ParticipantObject, ...] = ()
    event_type: Code | None = None
    outcome_description: str = ""

    def __post_init__(self) -> None:
        if self.time.tzinfo is None or self.time.utcoffset() is None:
            raise ValueError("an audit event time must be timezone-aware")
        if not self.participants:
            raise ValueError("an audit event names at least one active participant")

    @property
    def requestor(self) -> ActiveParticipant:
        """The participant who asked for the action (the first one when none is flagged)."""
        return next((p for p in self.participants if p.is_requestor), self.participants[0])

    @property
    def patients(self) -> tuple[PatientIdentifier, ...]:
        """The patients the event concerns, each once, in a stable order."""
        found = {(o.id, o.issuer) for o in self.objects if o.kind is ObjectKind.PATIENT and o.id}
        return tuple(PatientIdentifier(PatientId(v), Issuer(i)) for v, i in sorted(found))


@dataclass(frozen=True, slots=True)
class AuditIndex:
    """The searchable columns a store keeps beside the canonical form (who, whom, when)."""

    event_id: str
    action: str
    outcome: int
    event_time: datetime
    user_id: str
    patients: tuple[PatientIdentifier, ...] = ()


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A stored event: its place in the chain, its canonical form and its hashes."""

    id: int
    recorded_at: datetime
    canonical: bytes
    prev_hash: str
    hash: str
    index: AuditIndex

    def event(self) -> AuditEvent:
        """The event, read back from the canonical form."""
        return from_canonical(self.canonical)


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last record of the chain as the store last saw it appended."""

    last_id: int = 0
    last_hash: str = GENESIS_HASH


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """A record where the chain does not hold, and why."""

    position: int
    record_id: int
    reason: str


class AuditChainBroken(ConflictingState):
    """The audit chain's head is missing or does not advance by one; nothing can be appended."""


# --- canonical form and hashes -----------------------------------------------------------


def _code(code: Code | None) -> dict[str, str] | None:
    return (
        None
        if code is None
        else {"code": code.code, "system": code.system, "meaning": code.meaning}
    )


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def to_dict(event: AuditEvent) -> dict[str, Any]:
    """The event as plain JSON-ready values, every field present."""
    return {
        "v": CANONICAL_VERSION,
        "event_id": event.event_id.value,
        "action": event.action.value,
        "outcome": int(event.outcome),
        "time": _utc(event.time),
        "event_type": _code(event.event_type),
        "outcome_description": event.outcome_description,
        "participants": [
            {
                "user_id": p.user_id,
                "alternative_user_id": p.alternative_user_id,
                "user_name": p.user_name,
                "is_requestor": p.is_requestor,
                "network_access_point": p.network_access_point,
                "role": _code(p.role),
            }
            for p in event.participants
        ],
        "source": {"id": event.source.id, "enterprise_site": event.source.enterprise_site},
        "objects": [
            {
                "kind": o.kind.value,
                "id": o.id,
                "issuer": o.issuer,
                "name": o.name,
                "accession_numbers": list(o.accession_numbers),
                "query": o.query,
            }
            for o in event.objects
        ],
    }


def canonical(event: AuditEvent) -> bytes:
    """The stable serialization the chain hashes: sorted-key, compact, UTF-8 JSON."""
    text = json.dumps(to_dict(event), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def _read_code(value: Any) -> Code | None:
    if value is None:
        return None
    return Code(str(value["code"]), str(value["system"]), str(value["meaning"]))


def from_canonical(data: bytes) -> AuditEvent:
    """The event a canonical form describes; ValueError when it is not one."""
    try:
        raw = json.loads(data.decode("utf-8"))
        if raw["v"] != CANONICAL_VERSION:
            raise ValueError(f"unknown canonical version {raw['v']!r}")
        return AuditEvent(
            event_id=EventId(raw["event_id"]),
            action=Action(raw["action"]),
            outcome=Outcome(raw["outcome"]),
            time=datetime.fromisoformat(raw["time"]),
            participants=tuple(
                ActiveParticipant(
                    user_id=str(p["user_id"]),
                    alternative_user_id=str(p["alternative_user_id"]),
                    user_name=str(p["user_name"]),
                    is_requestor=bool(p["is_requestor"]),
                    network_access_point=str(p["network_access_point"]),
                    role=_read_code(p["role"]),
                )
                for p in raw["participants"]
            ),
            source=AuditSource(str(raw["source"]["id"]), str(raw["source"]["enterprise_site"])),
            objects=tuple(
                ParticipantObject(
                    kind=ObjectKind(o["kind"]),
                    id=str(o["id"]),
                    issuer=str(o["issuer"]),
                    name=str(o["name"]),
                    accession_numbers=tuple(str(a) for a in o["accession_numbers"]),
                    query=str(o["query"]),
                )
                for o in raw["objects"]
            ),
            event_type=_read_code(raw["event_type"]),
            outcome_description=str(raw["outcome_description"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a canonical audit event: {exc!r}") from exc


def index_of(event: AuditEvent) -> AuditIndex:
    """The searchable columns of an event."""
    return AuditIndex(
        event_id=event.event_id.value,
        action=event.action.value,
        outcome=int(event.outcome),
        event_time=event.time,
        user_id=event.requestor.user_id,
        patients=event.patients,
    )


def chain_hash(previous_hash: str, canonical: bytes) -> str:
    """sha256 (hex) of the previous record's hash, a newline and this record's canonical form."""
    return hashlib.sha256(previous_hash.encode("ascii") + b"\n" + canonical).hexdigest()


# --- verification ------------------------------------------------------------------------


@dataclass(slots=True)
class ChainVerifier:
    """Checks records one at a time in chain order, so a long log is never held in memory.

    Each record must carry the next id, link to the hash stored in the record before it,
    hash to its stored hash, and have index columns that agree with its canonical form.
    The next record is checked against the *stored* hash of the one before, so one altered
    record is one break; a record altered with its hash recomputed breaks the next link.
    """

    previous_hash: str = GENESIS_HASH
    previous_id: int = 0
    position: int = 0
    breaks: list[ChainBreak] = field(default_factory=list)

    def feed(self, record: AuditRecord) -> ChainBreak | None:
        """Check the next record; the break it shows, if any."""
        reason = self._problem(record)
        found = None
        if reason:
            found = ChainBreak(self.position, record.id, reason)
            self.breaks.append(found)
        self.previous_hash = record.hash
        self.previous_id = record.id
        self.position += 1
        return found

    def _problem(self, record: AuditRecord) -> str:
        if record.id != self.previous_id + 1:
            return (
                f"record {record.id} follows record {self.previous_id}: "
                "records were removed or reordered"
            )
        if record.prev_hash != self.previous_hash:
            return "does not link to the record before it: that record was altered or removed"
        if record.hash != chain_hash(record.prev_hash, record.canonical):
            return "hash mismatch: the record's content was altered"
        try:
            event = from_canonical(record.canonical)
        except ValueError:
            return "canonical form unreadable although its hash matches"
        if canonical(event) != record.canonical:
            return "canonical form is not canonical although its hash matches"
        if record.index != index_of(event):
            return "index columns (time, user, patients) disagree with the recorded event"
        return ""

    def finish(self, head: ChainHead | None) -> ChainBreak | None:
        """Compare the end of the chain with the head the store keeps; the break, if any."""
        if head is None:
            return None
        reason = ""
        if self.previous_id < head.last_id:
            reason = (
                f"chain ends at record {self.previous_id} but the head says {head.last_id}: "
                "the newest records were removed"
            )
        elif self.previous_id > head.last_id:
            reason = (
                f"chain runs to record {self.previous_id} past the head's {head.last_id}: "
                "records were added without advancing the head"
            )
        elif self.previous_hash != head.last_hash:
            reason = "the last record's hash differs from the head's"
        if not reason:
            return None
        found = ChainBreak(self.position, self.previous_id, reason)
        self.breaks.append(found)
        return found


def verify_chain(records: Iterable[AuditRecord], head: ChainHead | None = None) -> list[ChainBreak]:
    """Every break in a chain read from its start; empty when it holds."""
    verifier = ChainVerifier()
    for record in records:
        verifier.feed(record)
    verifier.finish(head)
    return verifier.breaks


# --- helper constructors for the common events --------------------------------------------


def patient_object(patient: PatientIdentifier, name: str = "") -> ParticipantObject:
    """A patient as a participant object."""
    return ParticipantObject(ObjectKind.PATIENT, patient.value, issuer=patient.issuer, name=name)


def study_object(study_uid: str, accession_numbers: Sequence[str] = ()) -> ParticipantObject:
    """A study (with its accession numbers) as a participant object."""
    accessions = tuple(a for a in accession_numbers if a)
    return ParticipantObject(ObjectKind.STUDY, study_uid, accession_numbers=accessions)


def _objects(
    patients: Sequence[PatientIdentifier], studies: Sequence[ParticipantObject]
) -> tuple[ParticipantObject, ...]:
    return tuple(patient_object(p) for p in patients) + tuple(studies)


def _with_role(participant: ActiveParticipant, role: Code, is_requestor: bool) -> ActiveParticipant:
    return ActiveParticipant(
        user_id=participant.user_id,
        alternative_user_id=participant.alternative_user_id,
        user_name=participant.user_name,
        is_requestor=is_requestor,
        network_access_point=participant.network_access_point,
        role=participant.role or role,
    )


def application_activity(
    source: AuditSource,
    application: ActiveParticipant,
    at: datetime,
    *,
    is_start: bool = True,
    outcome: Outcome = Outcome.SUCCESS,
) -> AuditEvent:
    """pacsflow started or stopped (110100, Application Start/Stop)."""
    return AuditEvent(
        EventId.APPLICATION_ACTIVITY,
        Action.EXECUTE,
        outcome,
        at,
        (_with_role(application, Roles.APPLICATION, application.is_requestor),),
        source,
        event_type=EventTypes.APPLICATION_START if is_start else EventTypes.APPLICATION_STOP,
    )


def audit_log_used(
    source: AuditSource,
    user: ActiveParticipant,
    at: datetime,
    *,
    log_uri: str = "pacsflow:audit",
    outcome: Outcome = Outcome.SUCCESS,
) -> AuditEvent:
    """Someone read or searched the audit log (110101)."""
    log_object = ParticipantObject(ObjectKind.RESOURCE, log_uri, name="Security Audit Log")
    return AuditEvent(
        EventId.AUDIT_LOG_USED,
        Action.READ,
        outcome,
        at,
        (_with_role(user, Roles.SOURCE, True),),
        source,
        (log_object,),
    )


def instances_accessed(
    source: AuditSource,
    user: ActiveParticipant,
    at: datetime,
    *,
    action: Action = Action.READ,
    patients: Sequence[PatientIdentifier] = (),
    studies: Sequence[ParticipantObject] = (),
    outcome: Outcome = Outcome.SUCCESS,
    description: str = "",
) -> AuditEvent:
    """Stored instances were viewed (R), changed in the index (U), rejected (D) (110103)."""
    return AuditEvent(
        EventId.INSTANCES_ACCESSED,
        action,
        outcome,
        at,
        (_with_role(user, Roles.SOURCE, True),),
        source,
        _objects(patients, studies),
        outcome_description=description,
    )


def instances_transferred(
    source: AuditSource,
    sender: ActiveParticipant,
    receiver: ActiveParticipant,
    at: datetime,
    *,
    action: Action = Action.CREATE,
    requestor: ActiveParticipant | None = None,
    patients: Sequence[PatientIdentifier] = (),
    studies: Sequence[ParticipantObject] = (),
    outcome: Outcome = Outcome.SUCCESS,
) -> AuditEvent:
    """Instances moved between nodes: stored here (C), retrieved from here (R) (110104).

    The sender and the receiver carry the Source and Destination roles; a third party that
    asked for the move (the C-MOVE SCU) is added as the requestor.
    """
    participants = [
        _with_role(sender, Roles.SOURCE, requestor is None and sender.is_requestor),
        _with_role(receiver, Roles.DESTINATION, requestor is None and receiver.is_requestor),
    ]
    if requestor is not None:
        participants.insert(0, _with_role(requestor, Roles.APPLICATION_LAUNCHER, True))
    return AuditEvent(
        EventId.INSTANCES_TRANSFERRED,
        action,
        outcome,
        at,
        tuple(participants),
        source,
        _objects(patients, studies),
    )


def export(
    source: AuditSource,
    user: ActiveParticipant,
    at: datetime,
    *,
    destination: ActiveParticipant,
    patients: Sequence[PatientIdentifier] = (),
    studies: Sequence[ParticipantObject] = (),
    outcome: Outcome = Outcome.SUCCESS,
) -> AuditEvent:
    """Data left pacsflow's control: a download, a DICOMweb push, media (110106, R)."""
    return AuditEvent(
        EventId.EXPORT,
        Action.READ,
        outcome,
        at,
        (
            _with_role(user, Roles.SOURCE, True),
            _with_role(destination, Roles.DESTINATION, False),
        ),
        source,
        _objects(patients, studies),
    )


def data_import(
    source: AuditSource,
    user: ActiveParticipant,
    at: datetime,
    *,
    origin: ActiveParticipant,
    patients: Sequence[PatientIdentifier] = (),
    studies: Sequence[ParticipantObject] = (),
    outcome: Outcome = Outcome.SUCCESS,
) -> AuditEvent:
    """Data entered pacsflow's control other than by a DICOM transfer: upload, media (110107)."""
    return AuditEvent(
        EventId.IMPORT,
        Action.CREATE,
        outcome,
        at,
        (
            _with_role(user, Roles.DESTINATION, True),
            _with_role(origin, Roles.SOURCE, False),
        ),
        source,
        _objects(patients, studies),
    )


def order_record(
    source: AuditSource,
    user: ActiveParticipant,
    at: datetime,
    *,
    action: Action,
    patient: PatientIdentifier,
    accession_number: str,
    study_uid: str,
    outcome: Outcome = Outcome.SUCCESS,
) -> AuditEvent:
    """An order was created, changed, cancelled or read (110109)."""
    return AuditEvent(
        EventId.ORDER_RECORD,
        action,
        outcome,
        at,
        (_with_role(user, Roles.SOURCE, True),),
        source,
        (patient_object(patient), study_object(study_uid, (accession_number,))),
    )


def patient_record(
    source: AuditSource,
    user: ActiveParticipant,
    at: datetime,
    *,
    action: Action,
    patients: Sequence[PatientIdentifier],
    outcome: Outcome = Outcome.SUCCESS,
    description: str = "",
) -> AuditEvent:
    """A patient was registered, updated, merged or linked (110110; a merge names both)."""
    return AuditEvent(
        EventId.PATIENT_RECORD,
        action,
        outcome,
        at,
        (_with_role(user, Roles.SOURCE, True),),
        source,
        tuple(patient_object(p) for p in patients),
        outcome_description=description,
    )


def query(
    source: AuditSource,
    user: ActiveParticipant,
    at: datetime,
    *,
    query_text: str,
    sop_class_uid: str = "",
    responder: ActiveParticipant | None = None,
    patients: Sequence[PatientIdentifier] = (),
    outcome: Outcome = Outcome.SUCCESS,
) -> AuditEvent:
    """A query was answered: C-FIND (its SOP Class UID), QIDO-RS or FHIR search (110112, E)."""
    participants = [_with_role(user, Roles.SOURCE, True)]
    if responder is not None:
        participants.append(_with_role(responder, Roles.DESTINATION, False))
    query_object = ParticipantObject(ObjectKind.QUERY, sop_class_uid, query=query_text)
    return AuditEvent(
        EventId.QUERY,
        Action.EXECUTE,
        outcome,
        at,
        tuple(participants),
        source,
        (query_object, *(patient_object(p) for p in patients)),
    )


def security_alert(
    source: AuditSource,
    user: ActiveParticipant,
    at: datetime,
    *,
    alert: Code,
    resource: str,
    outcome: Outcome = Outcome.SUCCESS,
    description: str = "",
) -> AuditEvent:
    """A security-relevant change or attempt: configuration, roles, restricted use (110113)."""
    return AuditEvent(
        EventId.SECURITY_ALERT,
        Action.EXECUTE,
        outcome,
        at,
        (_with_role(user, Roles.SOURCE, True),),
        source,
        (ParticipantObject(ObjectKind.RESOURCE, resource),),
        event_type=alert,
        outcome_description=description,
    )


def user_authentication(
    source: AuditSource,
    user: ActiveParticipant,
    at: datetime,
    *,
    is_login: bool = True,
    outcome: Outcome = Outcome.SUCCESS,
    description: str = "",
) -> AuditEvent:
    """A login or logout, succeeded or failed (110114; a failed login has outcome 4)."""
    return AuditEvent(
        EventId.USER_AUTHENTICATION,
        Action.EXECUTE,
        outcome,
        at,
        (_with_role(user, Roles.SOURCE, True),),
        source,
        event_type=EventTypes.LOGIN if is_login else EventTypes.LOGOUT,
        outcome_description=description,
    )


__all__ = [
    "CANONICAL_VERSION",
    "GENESIS_HASH",
    "Action",
    "ActiveParticipant",
    "AuditChainBroken",
    "AuditEvent",
    "AuditIndex",
    "AuditRecord",
    "AuditSource",
    "ChainBreak",
    "ChainHead",
    "ChainVerifier",
    "Code",
    "EventId",
    "EventTypes",
    "ObjectKind",
    "Outcome",
    "ParticipantObject",
    "Roles",
    "application_activity",
    "audit_log_used",
    "canonical",
    "chain_hash",
    "data_import",
    "export",
    "from_canonical",
    "index_of",
    "instances_accessed",
    "instances_transferred",
    "order_record",
    "patient_object",
    "patient_record",
    "query",
    "security_alert",
    "study_object",
    "to_dict",
    "user_authentication",
    "verify_chain",
]
