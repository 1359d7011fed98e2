"""Audit events (DICOM PS3.15 A.5, the IHE ATNA vocabulary): the coded vocabulary and the event.

An event says who (active participants), did what (event ID, action, event type), to what
(participant objects: patients, studies, queries, security resources), when, where (network
access points, audit source) and with which outcome. The builders of the common events are
in ``audit_events``; the canonical form and the tamper-evident chain in ``audit_chain``.

Only the stdlib: the DICOM XML rendering and the syslog transport live in an adapter.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier


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


__all__ = [
    "Action",
    "ActiveParticipant",
    "AuditEvent",
    "AuditSource",
    "Code",
    "EventId",
    "EventTypes",
    "ObjectKind",
    "Outcome",
    "ParticipantObject",
    "Roles",
]
