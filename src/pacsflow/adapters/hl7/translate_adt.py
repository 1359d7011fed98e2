"""ADT messages -> identity commands: register, update, merge, link, change identifier
(IHE Radiology TF-2 RAD-1/RAD-12; ADT^A01/A04/A05/A08/A24/A31/A37/A40/A47)."""

from __future__ import annotations

from datetime import date, tzinfo

from pacsflow.adapters.hl7.codec import Message, Repetition, Segment
from pacsflow.adapters.hl7.errors import (
    SegmentSequenceError,
)
from pacsflow.adapters.hl7.field_map import (
    FieldMap,
)
from pacsflow.adapters.hl7.values import field_text as _text
from pacsflow.domain import commands as cmd
from pacsflow.domain.errors import MalformedMessage, MissingIdentifier, quote
from pacsflow.domain.patients import (
    Demographics,
    Issuer,
    Patient,
    PatientId,
    PatientIdentifier,
    PersonName,
)


def register(message: Message, _: FieldMap, __: tzinfo) -> list[cmd.Command]:
    return [cmd.RegisterPatient(read_patient(message))]


def update(message: Message, _: FieldMap, __: tzinfo) -> list[cmd.Command]:
    return [cmd.UpdatePatient(read_patient(message))]


def merge(message: Message, _field_map: FieldMap, _zone: tzinfo) -> list[cmd.Command]:
    """ADT^A40: each PID (survivor) is followed by the MRG naming the identifiers merged in."""
    commands: list[cmd.Command] = []
    survivor: Patient | None = None
    for segment in message.segments:
        if segment.name == "PID":
            survivor = patient_of(segment)
        elif segment.name == "MRG":
            if survivor is None:
                raise SegmentSequenceError("MRG must follow its PID", location="MRG")
            merged = tuple(_identifier(r) for r in segment.repetitions(1) if _text(r.get(1)))
            if not merged:
                raise MissingIdentifier(
                    "MRG-1 (prior patient identifier) is required", location="MRG-1"
                )
            commands.append(cmd.MergePatients(survivor, merged))
            survivor = None
    if not commands:
        raise MissingIdentifier("ADT^A40 needs a PID and an MRG segment", location="MRG")
    return commands


def link(message: Message, _field_map: FieldMap, _zone: tzinfo) -> list[cmd.Command]:
    """ADT^A24 (IHE ITI-30): PID, then the PID of the patient linked to it; same person."""
    patient, linked = _two_patients(message, "A24")
    return [cmd.LinkPatients(patient, linked)]


def unlink(message: Message, _field_map: FieldMap, _zone: tzinfo) -> list[cmd.Command]:
    """ADT^A37 (IHE ITI-30): the two PIDs of an earlier A24, no longer linked."""
    patient, unlinked = _two_patients(message, "A37")
    return [cmd.UnlinkPatients(patient.primary, unlinked.primary)]


def _two_patients(message: Message, event: str) -> tuple[Patient, Patient]:
    """The two PID segments of A24/A37 (MSH EVN PID [PD1] [PV1] PID [PD1] [PV1])."""
    pids = [segment for segment in message.segments if segment.name == "PID"]
    if len(pids) != 2:
        raise SegmentSequenceError(
            f"ADT^{event} needs exactly two PID segments (the patient, then the other "
            f"patient), not {len(pids)}",
            location="PID",
        )
    first = patient_of(pids[0])
    try:
        second = patient_of(pids[1])
    except MissingIdentifier as exc:
        raise MissingIdentifier(
            "PID-3 (patient identifier) of the second PID is required", location="PID-3"
        ) from exc
    return first, second


def change_identifier(message: Message, _field_map: FieldMap, _zone: tzinfo) -> list[cmd.Command]:
    """ADT^A47 (IHE ITI-30): PID-3 the correct identifier, MRG-1 the incorrect one it replaces.

    The correct identifier is the PID-3 repetition of the incorrect one's assigning authority,
    else the first. Several PID + MRG groups are read like A40's.
    """
    commands: list[cmd.Command] = []
    patient: Patient | None = None
    for segment in message.segments:
        if segment.name == "PID":
            patient = patient_of(segment)
        elif segment.name == "MRG":
            if patient is None:
                raise SegmentSequenceError("MRG must follow its PID", location="MRG")
            incorrect = tuple(_identifier(r) for r in segment.repetitions(1) if _text(r.get(1)))
            if not incorrect:
                raise MissingIdentifier(
                    "MRG-1 (prior patient identifier list) is required", location="MRG-1"
                )
            for wrong in incorrect:
                others = [i for i in patient.identifiers if i != wrong]  # PID-3 may list it too
                if not others:
                    raise MissingIdentifier(
                        "PID-3 (patient identifier) must carry the correct identifier, not only "
                        "the MRG-1 one it replaces",
                        location="PID-3",
                    )
                right = next((i for i in others if i.issuer == wrong.issuer), others[0])
                commands.append(cmd.ChangePatientIdentifier(patient, wrong, right))
            patient = None
    if not commands:
        raise MissingIdentifier("ADT^A47 needs a PID and an MRG segment", location="MRG")
    return commands


def read_patient(message: Message) -> Patient:
    """The patient of PID: every PID-3 identifier (first is primary), name, birth date, sex."""
    pid = message.segment("PID")
    if pid is None:
        raise MissingIdentifier(
            "PID-3 (patient identifier) is required, but the message has no PID segment",
            location="PID-3",
        )
    return patient_of(pid)


def patient_of(pid: Segment) -> Patient:
    """The patient a PID segment describes."""
    identifiers = tuple(_identifier(rep) for rep in pid.repetitions(3) if _text(rep.get(1)))
    if not identifiers:
        raise MissingIdentifier("PID-3 (patient identifier) is required", location="PID-3")
    return Patient(
        identifiers=identifiers,
        demographics=Demographics(
            name=_person_name(pid.repetitions(5)),
            birth_date=_birth_date(pid.get(7)),
            sex=_text(pid.get(8)).upper(),
        ),
    )


def _identifier(rep: Repetition) -> PatientIdentifier:
    # CX-4 assigning authority is an HD: namespace ID & universal ID & universal ID type.
    issuer = _text(rep.get(4, 1)) or _text(rep.get(4, 2))
    return PatientIdentifier(PatientId(_text(rep.get(1))), Issuer(issuer))


def _person_name(reps: tuple[Repetition, ...]) -> PersonName:
    # XPN-7 name type L is the legal name; otherwise the first repetition is the name.
    chosen = next((r for r in reps if r.get(7).upper() == "L"), reps[0] if reps else None)
    if chosen is None:
        return PersonName()
    return PersonName(
        family=_text(chosen.get(1, 1)),  # XPN-1 is FN from v2.3 on: surname & own surname...
        given=_text(chosen.get(2)),
        middle=_text(chosen.get(3)),
        suffix=_text(chosen.get(4)),
        prefix=_text(chosen.get(5)),
    )


def _birth_date(text: str) -> date | None:
    text = _text(text)
    if len(text) < 8:
        return None  # no value, or only a year or month: not a date a person is matched on
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError as exc:
        raise MalformedMessage(
            f"PID-7 (date of birth) {quote(text)} is not a date (YYYYMMDD)", location="PID-7"
        ) from exc


__all__ = [
    "change_identifier",
    "link",
    "merge",
    "patient_of",
    "read_patient",
    "register",
    "unlink",
    "update",
]
