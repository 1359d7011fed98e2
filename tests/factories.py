"""Builders of domain values with sensible defaults and unique identifiers."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from typing import Any

from pacsflow.domain.matching import ReceivedIdentity
from pacsflow.domain.orders import AccessionNumber, Order, ProcedureCode
from pacsflow.domain.patients import (
    Demographics,
    Issuer,
    Patient,
    PatientId,
    PatientIdentifier,
    PersonName,
)
from pacsflow.domain.studies import ArrivedInstance, InstanceRecord
from pacsflow.domain.uids import Uid, new_uid

_seq = itertools.count(1)


def unique(prefix: str) -> str:
    """A unique short identifier."""
    return f"{prefix}{next(_seq):06d}"


def identifier(value: str | None = None, issuer: str = "HOSP") -> PatientIdentifier:
    """A patient identifier."""
    return PatientIdentifier(PatientId(value or unique("P")), Issuer(issuer))


def patient(
    value: str | None = None,
    *,
    issuer: str = "HOSP",
    family: str = "DOE",
    given: str = "JANE",
    birth: date | None = date(1970, 1, 2),
    sex: str = "F",
    more: tuple[PatientIdentifier, ...] = (),
) -> Patient:
    """A registered patient."""
    return Patient(
        identifiers=(identifier(value, issuer), *more),
        demographics=Demographics(PersonName(family=family, given=given), birth, sex),
    )


def order(p: Patient, **overrides: Any) -> Order:
    """A scheduled CT order for patient p."""
    values: dict[str, Any] = {
        "accession_number": AccessionNumber(unique("ACC")),
        "patient": p.primary,
        "study_instance_uid": new_uid(),
        "requested_procedure_id": unique("RP"),
        "requested_procedure_description": "CT CHEST",
        "procedure_code": ProcedureCode("CTCHEST", "L", "CT chest"),
        "modality": "CT",
        "scheduled_station_ae": "CT01",
        "scheduled_start": datetime(2026, 11, 28, 9, 30, tzinfo=UTC),
    }
    values.update(overrides)
    return Order(**values)


def received(
    p: Patient | None = None,
    *,
    accession: str = "",
    study_uid: Uid | None = None,
    patient_id: str | None = None,
    issuer: str | None = None,
    family: str | None = None,
    given: str | None = None,
    birth: date | None = None,
    sex: str | None = None,
) -> ReceivedIdentity:
    """What a modality sent, by default agreeing with patient p."""
    base = p.demographics if p else Demographics(PersonName("ROE", "RICHARD"), None, "M")
    pid = p.primary if p else identifier()
    return ReceivedIdentity(
        patient=PatientIdentifier(
            PatientId(patient_id if patient_id is not None else pid.value),
            Issuer(issuer if issuer is not None else pid.issuer),
        ),
        demographics=Demographics(
            PersonName(
                family=family if family is not None else base.name.family,
                given=given if given is not None else base.name.given,
            ),
            birth if birth is not None else base.birth_date,
            sex if sex is not None else base.sex,
        ),
        accession_number=accession,
        study_instance_uid=study_uid or new_uid(),
    )


def arrived(identity: ReceivedIdentity, **overrides: Any) -> ArrivedInstance:
    """An arriving CT instance of the identity's study."""
    inst: dict[str, Any] = {
        "study_instance_uid": identity.study_instance_uid,
        "series_instance_uid": new_uid(),
        "sop_instance_uid": new_uid(),
        "sop_class_uid": Uid("1.2.840.10008.5.1.4.1.1.2"),
        "transfer_syntax_uid": Uid("1.2.840.10008.1.2.1"),
        "blob_key": "",
        "size": 0,
        "modality": "CT",
    }
    inst.update(overrides)
    return ArrivedInstance(identity=identity, instance=InstanceRecord(**inst), source_ae="MOD1")
