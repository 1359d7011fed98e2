"""Builders of the common audit events (DICOM PS3.15 A.5.3, IHE ATNA): one per event ID."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pacsflow.domain.audit import (
    Action,
    ActiveParticipant,
    AuditEvent,
    AuditSource,
    Code,
    EventId,
    EventTypes,
    ObjectKind,
    Outcome,
    ParticipantObject,
    Roles,
)
from pacsflow.domain.patients import PatientIdentifier


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


def _by_user(
    event_id: EventId,
    action: Action,
    outcome: Outcome,
    at: datetime,
    user: ActiveParticipant,
    source: AuditSource,
    objects: tuple[ParticipantObject, ...] = (),
    *,
    event_type: Code | None = None,
    description: str = "",
) -> AuditEvent:
    """An event with one participant: the user who asked for it, in the Source role."""
    return AuditEvent(
        event_id,
        action,
        outcome,
        at,
        (_with_role(user, Roles.SOURCE, True),),
        source,
        objects,
        event_type=event_type,
        outcome_description=description,
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
    return _by_user(EventId.AUDIT_LOG_USED, Action.READ, outcome, at, user, source, (log_object,))


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
    objects = _objects(patients, studies)
    return _by_user(
        EventId.INSTANCES_ACCESSED,
        action,
        outcome,
        at,
        user,
        source,
        objects,
        description=description,
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
    participants = (
        _with_role(user, Roles.SOURCE, True),
        _with_role(destination, Roles.DESTINATION, False),
    )
    objects = _objects(patients, studies)
    return AuditEvent(EventId.EXPORT, Action.READ, outcome, at, participants, source, objects)


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
    participants = (
        _with_role(user, Roles.DESTINATION, True),
        _with_role(origin, Roles.SOURCE, False),
    )
    objects = _objects(patients, studies)
    return AuditEvent(EventId.IMPORT, Action.CREATE, outcome, at, participants, source, objects)


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
    objects = (patient_object(patient), study_object(study_uid, (accession_number,)))
    return _by_user(EventId.ORDER_RECORD, action, outcome, at, user, source, objects)


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
    objects = tuple(patient_object(p) for p in patients)
    return _by_user(
        EventId.PATIENT_RECORD, action, outcome, at, user, source, objects, description=description
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
    return _by_user(
        EventId.SECURITY_ALERT,
        Action.EXECUTE,
        outcome,
        at,
        user,
        source,
        (ParticipantObject(ObjectKind.RESOURCE, resource),),
        event_type=alert,
        description=description,
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
    return _by_user(
        EventId.USER_AUTHENTICATION,
        Action.EXECUTE,
        outcome,
        at,
        user,
        source,
        event_type=EventTypes.LOGIN if is_login else EventTypes.LOGOUT,
        description=description,
    )


__all__ = [
    "application_activity",
    "audit_log_used",
    "data_import",
    "export",
    "instances_accessed",
    "instances_transferred",
    "order_record",
    "patient_object",
    "patient_record",
    "query",
    "security_alert",
    "study_object",
    "user_authentication",
]
