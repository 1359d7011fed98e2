"""Matching an arriving study to its order and patient, and classifying what does not match.

An instance is matched to an order by accession number first, then by the order's Study
Instance UID; to a patient by patient ID + issuer. What does not agree is held in the
exceptions queue with a reason and the source of the mismatch.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date

from pacsflow.domain.orders import Order, OrderStatus
from pacsflow.domain.patients import (
    Demographics,
    Patient,
    PatientIdentifier,
    fold_text,
    normalize_identifier,
)
from pacsflow.domain.uids import Uid


class ExceptionReason(enum.StrEnum):
    """Why a study is held for reconciliation."""

    NO_ORDER = "no_order"
    UNKNOWN_ACCESSION = "unknown_accession"
    UNKNOWN_PATIENT = "unknown_patient"
    PATIENT_ORDER_MISMATCH = "patient_order_mismatch"
    DEMOGRAPHICS_DIFFER = "demographics_differ"
    ORDER_NOT_SCHEDULED = "order_not_scheduled"
    STUDY_INCONSISTENT = "study_inconsistent"
    MISSING_PATIENT_ID = "missing_patient_id"


class MismatchSource(enum.StrEnum):
    """Which step of the workflow most likely produced the mismatch."""

    REGISTRATION = "registration"
    SCHEDULING = "scheduling"
    MODALITY_ENTRY = "modality_entry"
    INTERFACE_TRANSLATION = "interface_translation"


@dataclass(frozen=True, slots=True)
class ReceivedIdentity:
    """The identifying attributes of an arriving instance, as the modality sent them."""

    patient: PatientIdentifier
    demographics: Demographics
    accession_number: str
    study_instance_uid: Uid


@dataclass(frozen=True, slots=True)
class Matched:
    """The study belongs to this order and patient."""

    order: Order
    patient: Patient


@dataclass(frozen=True, slots=True)
class Held:
    """The study is held for reconciliation."""

    reason: ExceptionReason
    source: MismatchSource
    detail: str
    order: Order | None = None
    patient: Patient | None = None


MatchOutcome = Matched | Held


def match_study(
    received: ReceivedIdentity,
    *,
    order_by_accession: Order | None,
    order_by_study_uid: Order | None,
    order_patient: Patient | None,
    received_patient: Patient | None,
) -> MatchOutcome:
    """Decide where an arriving study belongs.

    `order_patient` is the registered patient of whichever order was found; `received_patient`
    is the registered patient found by the instance's own patient ID + issuer.
    """
    order = order_by_accession or order_by_study_uid
    if not received.patient.value.strip():
        # Type 2 in the image IODs (PS3.3 C.7.1.1): present but empty is valid, yet nothing
        # can tell whose images these are, not even an order's patient, until a person says.
        return Held(
            ExceptionReason.MISSING_PATIENT_ID,
            MismatchSource.MODALITY_ENTRY,
            "the images carry no Patient ID (0010,0020)",
            order=order,
            patient=order_patient if order is not None else None,
        )
    if order is None:
        return _held_without_order(received, received_patient)
    if order_patient is None:  # an order always references a registered patient
        return Held(
            ExceptionReason.UNKNOWN_PATIENT,
            MismatchSource.REGISTRATION,
            "the order's patient is not registered",
            order=order,
        )
    if order.status is OrderStatus.CANCELLED:
        return Held(
            ExceptionReason.ORDER_NOT_SCHEDULED,
            MismatchSource.SCHEDULING,
            f"order {order.accession_number} was cancelled before images arrived",
            order=order,
            patient=order_patient,
        )
    if not _same_patient(received.patient, order_patient):
        source = (
            MismatchSource.INTERFACE_TRANSLATION
            if _ids_equal_after_normalizing(received.patient, order_patient)
            else MismatchSource.MODALITY_ENTRY
        )
        return Held(
            ExceptionReason.PATIENT_ORDER_MISMATCH,
            source,
            f"patient ID {received.patient.value!r} does not belong to order "
            f"{order.accession_number}",
            order=order,
            patient=order_patient,
        )
    differences = demographic_differences(received.demographics, order_patient.demographics)
    if differences:
        source = (
            MismatchSource.INTERFACE_TRANSLATION
            if not demographic_differences(
                received.demographics, order_patient.demographics, folded=True
            )
            else MismatchSource.MODALITY_ENTRY
        )
        return Held(
            ExceptionReason.DEMOGRAPHICS_DIFFER,
            source,
            "differs from the registered patient in " + ", ".join(differences),
            order=order,
            patient=order_patient,
        )
    return Matched(order=order, patient=order_patient)


def _held_without_order(received: ReceivedIdentity, patient: Patient | None) -> Held:
    if received.accession_number:
        reason, source = ExceptionReason.UNKNOWN_ACCESSION, MismatchSource.SCHEDULING
        detail = f"no order has accession number {received.accession_number!r}"
    elif patient is None:
        reason, source = ExceptionReason.UNKNOWN_PATIENT, MismatchSource.REGISTRATION
        detail = f"no order, and patient ID {received.patient.value!r} is not registered"
    else:
        reason, source = ExceptionReason.NO_ORDER, MismatchSource.MODALITY_ENTRY
        detail = "acquired without an order (no accession number, unscheduled)"
    return Held(reason, source, detail, patient=patient)


def _same_patient(received: PatientIdentifier, patient: Patient) -> bool:
    for identifier in patient.identifiers:
        if identifier.value != received.value:
            continue
        if not received.issuer or not identifier.issuer or identifier.issuer == received.issuer:
            return True
    return False


def _ids_equal_after_normalizing(received: PatientIdentifier, patient: Patient) -> bool:
    wanted = normalize_identifier(received.value)
    return any(normalize_identifier(i.value) == wanted for i in patient.identifiers)


def demographic_differences(
    received: Demographics, registered: Demographics, *, folded: bool = False
) -> tuple[str, ...]:
    """Names of the demographics that differ; an attribute the modality left empty is not a
    difference. With `folded`, case, accents and separators are ignored."""
    found: list[str] = []
    if not received.name.is_empty() and _names_differ(received, registered, folded=folded):
        found.append("name")
    if _dates_differ(received.birth_date, registered.birth_date):
        found.append("birth date")
    if received.sex and registered.sex and received.sex.upper() != registered.sex.upper():
        found.append("sex")
    return tuple(found)


def _names_differ(received: Demographics, registered: Demographics, *, folded: bool) -> bool:
    a, b = received.name, registered.name
    if folded:
        return fold_text(f"{a.family} {a.given} {a.middle}") != fold_text(
            f"{b.family} {b.given} {b.middle}"
        )
    return (a.family.upper(), a.given.upper(), a.middle.upper()) != (
        b.family.upper(),
        b.given.upper(),
        b.middle.upper(),
    )


def _dates_differ(received: date | None, registered: date | None) -> bool:
    return received is not None and registered is not None and received != registered


class MatchOutcomeKind(enum.StrEnum):
    """How a study's matching ended, for the KPIs."""

    AUTO_MATCHED = "auto_matched"
    PRIOR = "prior"  # fetched from an archive as a prior of a registered patient
    LATE_MATCHED = "late_matched"
    RECONCILED = "reconciled"
    HELD = "held"


__all__ = [
    "ExceptionReason",
    "Held",
    "MatchOutcome",
    "MatchOutcomeKind",
    "Matched",
    "MismatchSource",
    "ReceivedIdentity",
    "demographic_differences",
    "match_study",
]
