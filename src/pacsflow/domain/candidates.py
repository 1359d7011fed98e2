"""Candidate suggestions: which orders and patients a held study most likely belongs to.

Scoring is evidence in points: each attribute that agrees (or nearly agrees, the way manual
entry goes wrong: a typo, two characters transposed, family and given name swapped, day
and month swapped, a missing issuer) adds points; a sex or modality that disagrees takes
some away. An order's score adds the evidence about its patient to the evidence about the
order itself, so an order of the right patient ranks above that patient alone (matching to
an order says more than assigning to a patient). Scores are clamped to 0..100.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from pacsflow.domain.matching import ReceivedIdentity
from pacsflow.domain.orders import Order, OrderStatus
from pacsflow.domain.patients import Patient, PersonName, fold_text, normalize_identifier

#: Points per piece of evidence (see docs/matching.md, "Candidate suggestions").
SAME_PATIENT_ID = 30
SAME_ID_OTHER_ISSUER = 15
NEAR_PATIENT_ID = 18
SAME_NAME = 15
SWAPPED_NAME = 12
SAME_FAMILY_NAME = 10
SIMILAR_NAME = 8
SAME_BIRTH_DATE = 15
NEAR_BIRTH_DATE = 8
DIFFERENT_SEX = -10
SAME_ACCESSION = 25
NEAR_ACCESSION = 15
CONTAINED_ACCESSION = 12
SCHEDULED_SAME_DAY = 10
SCHEDULED_NEXT_DAY = 5
SAME_MODALITY = 5
DIFFERENT_MODALITY = -5

#: Below this, a candidate is not worth showing.
MIN_SCORE = 20
#: Names at least this alike (1 - edits / length) count as similar.
SIMILAR_NAME_RATIO = 0.8
#: Identifiers shorter than this (once normalized) are too short for "one typo away".
_MIN_NEAR_LENGTH = 4


class CandidateKind(enum.StrEnum):
    """What a candidate is: an order to match the study to, or a patient to assign it to."""

    ORDER = "order"
    PATIENT = "patient"


@dataclass(frozen=True, slots=True)
class Evidence:
    """One reason a candidate fits (or does not): a code, its points and a human detail."""

    code: str
    points: int
    detail: str


@dataclass(frozen=True, slots=True)
class HeldStudy:
    """What is known about a held study: the identity it arrived with, its date, modalities."""

    received: ReceivedIdentity
    study_date: date | None = None
    modalities: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Candidate:
    """An order or patient the study may belong to, with its score and the evidence."""

    kind: CandidateKind
    score: int
    evidence: tuple[Evidence, ...]
    patient: Patient | None
    order: Order | None = None


def edit_distance(a: str, b: str) -> int:
    """Edits (insert, delete, substitute, swap two neighbours) turning a into b.

    The optimal string alignment distance: a transposition of adjacent characters, the
    commonest keying error, costs one edit.
    """
    if a == b:
        return 0
    before: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], before[j - 2] + 1)
        before, previous = previous, current
    return previous[len(b)]


def similarity(a: str, b: str) -> float:
    """How alike two texts are, 0..1 (1 - edits / longer length); two empty texts are 1."""
    longest = max(len(a), len(b))
    return 1.0 if longest == 0 else 1.0 - edit_distance(a, b) / longest


def is_transposition(a: str, b: str) -> bool:
    """True when b is a with two neighbouring (different) characters swapped."""
    if len(a) != len(b):
        return False
    diffs = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    return (
        len(diffs) == 2
        and diffs[1] == diffs[0] + 1
        and (a[diffs[0]], a[diffs[1]]) == (b[diffs[1]], b[diffs[0]])
    )


def typing_variants(value: str) -> tuple[str, ...]:
    """Values a person may have meant when typing value: itself in other case, without
    separators or leading zeros, with two neighbouring characters swapped (for index lookups)."""
    if not value:
        return ()
    found = {value, value.upper(), value.lower()}
    kept = "".join(c for c in value if c.isalnum())
    found.update({kept, kept.lstrip("0") or kept})
    for i in range(len(value) - 1):
        if value[i] != value[i + 1]:
            found.add(value[:i] + value[i + 1] + value[i] + value[i + 2 :])
    found.discard("")
    return tuple(sorted(found))


def birth_date_variants(value: date | None) -> tuple[date, ...]:
    """Dates one keying error away from value: day and month swapped, one digit wrong, two
    neighbouring digits swapped (for index lookups)."""
    if value is None:
        return ()
    text = _digits(value)
    texts = {text, text[:4] + text[6:] + text[4:6]}
    for i in range(len(text)):
        texts.update(text[:i] + d + text[i + 1 :] for d in "0123456789")
        if i + 1 < len(text):
            texts.add(text[:i] + text[i + 1] + text[i] + text[i + 2 :])
    found = set()
    for t in texts:
        parsed = _date(t)
        if parsed is not None and parsed.year >= _EARLIEST_YEAR:
            found.add(parsed)
    return tuple(sorted(found))


#: Variants of a birth date before this year are not looked up (nobody alive was born then).
_EARLIEST_YEAR = 1850


def _digits(value: date) -> str:
    """YYYYMMDD, zero-padded whatever the year (strftime does not pad years below 1000)."""
    return f"{value.year:04d}{value.month:02d}{value.day:02d}"


def _date(text: str) -> date | None:
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def identity_evidence(received: ReceivedIdentity, patient: Patient) -> tuple[Evidence, ...]:
    """How well the identity an image arrived with fits a registered patient."""
    found = [
        e
        for e in (
            _identifier_evidence(received, patient),
            _name_evidence(received.demographics.name, patient.demographics.name),
            _birth_date_evidence(received.demographics.birth_date, patient.demographics.birth_date),
        )
        if e is not None
    ]
    sex, registered = received.demographics.sex.upper(), patient.demographics.sex.upper()
    if sex and registered and sex != registered:
        found.append(Evidence("different_sex", DIFFERENT_SEX, f"sex {sex} vs {registered}"))
    return tuple(found)


def _identifier_evidence(received: ReceivedIdentity, patient: Patient) -> Evidence | None:
    got = received.patient
    wanted = normalize_identifier(got.value)
    if not wanted:
        return None
    best: Evidence | None = None
    for identifier in patient.identifiers:
        normalized = normalize_identifier(identifier.value)
        if normalized == wanted:
            if got.issuer and identifier.issuer and got.issuer != identifier.issuer:
                found = Evidence(
                    "same_patient_id_other_issuer",
                    SAME_ID_OTHER_ISSUER,
                    f"patient ID {identifier.value} of issuer {identifier.issuer}, "
                    f"not {got.issuer}",
                )
            else:
                how = [] if identifier.value == got.value else ["written differently"]
                if identifier.issuer and not got.issuer:
                    how.append("issuer missing on the image")
                found = Evidence(
                    "same_patient_id",
                    SAME_PATIENT_ID,
                    f"patient ID {identifier.value}" + (f" ({', '.join(how)})" if how else ""),
                )
        elif min(len(normalized), len(wanted)) >= _MIN_NEAR_LENGTH and (
            edit_distance(normalized, wanted) == 1
        ):
            what = (
                "two neighbouring characters swapped"
                if is_transposition(normalized, wanted)
                else "one character differs"
            )
            found = Evidence(
                "near_patient_id", NEAR_PATIENT_ID, f"patient ID {identifier.value}: {what}"
            )
        else:
            continue
        if best is None or found.points > best.points:
            best = found
    return best


def _name_evidence(received: PersonName, registered: PersonName) -> Evidence | None:
    rf, rg = fold_text(received.family), fold_text(received.given)
    pf, pg = fold_text(registered.family), fold_text(registered.given)
    if not (rf or rg) or not (pf or pg):
        return None
    shown = registered.display()
    if (rf, rg) == (pf, pg):
        return Evidence("same_name", SAME_NAME, f"name {shown}")
    if rf and rg and (rf, rg) == (pg, pf):
        return Evidence("swapped_name", SWAPPED_NAME, f"name {shown}: family and given swapped")
    if rf and rf == pf and not (rg and pg):
        return Evidence("same_family_name", SAME_FAMILY_NAME, f"family name {registered.family}")
    ratio = max(similarity(f"{rf} {rg}", f"{pf} {pg}"), similarity(f"{rg} {rf}", f"{pf} {pg}"))
    if ratio >= SIMILAR_NAME_RATIO:
        return Evidence("similar_name", SIMILAR_NAME, f"name {shown}: {ratio:.0%} alike")
    return None


def _birth_date_evidence(received: date | None, registered: date | None) -> Evidence | None:
    if received is None or registered is None:
        return None
    if received == registered:
        return Evidence("same_birth_date", SAME_BIRTH_DATE, f"birth date {registered}")
    a, b = _digits(received), _digits(registered)
    if (received.day, received.month) == (registered.month, registered.day) and (
        received.year == registered.year
    ):
        what = "day and month swapped"
    elif edit_distance(a, b) == 1:
        what = "two neighbouring digits swapped" if is_transposition(a, b) else "one digit differs"
    else:
        return None
    return Evidence("near_birth_date", NEAR_BIRTH_DATE, f"birth date {registered}: {what}")


def order_evidence(held: HeldStudy, order: Order) -> tuple[Evidence, ...]:
    """How well an order fits the study itself: accession or reserved UID, date, modality."""
    found: list[Evidence] = []
    accession = _accession_evidence(held.received, order)
    if accession is not None:
        found.append(accession)
    start = order.scheduled_start
    if held.study_date is not None and start is not None:
        days = abs((start.date() - held.study_date).days)
        if days == 0:
            found.append(
                Evidence("scheduled_same_day", SCHEDULED_SAME_DAY, f"scheduled {start.date()}")
            )
        elif days == 1:
            found.append(
                Evidence(
                    "scheduled_next_day",
                    SCHEDULED_NEXT_DAY,
                    f"scheduled {start.date()}, a day from the study date {held.study_date}",
                )
            )
    modalities = {m.upper() for m in held.modalities if m}
    if order.modality and modalities:
        if order.modality.upper() in modalities:
            found.append(Evidence("same_modality", SAME_MODALITY, f"modality {order.modality}"))
        else:
            found.append(
                Evidence(
                    "different_modality",
                    DIFFERENT_MODALITY,
                    f"ordered {order.modality}, acquired {', '.join(sorted(modalities))}",
                )
            )
    return tuple(found)


def _accession_evidence(received: ReceivedIdentity, order: Order) -> Evidence | None:
    if received.study_instance_uid and received.study_instance_uid == order.study_instance_uid:
        return Evidence(
            "same_study_uid", SAME_ACCESSION, "the Study Instance UID this order reserved"
        )
    got, wanted = (
        normalize_identifier(received.accession_number),
        normalize_identifier(order.accession_number),
    )
    if not got or not wanted:
        return None
    shown = order.accession_number
    if got == wanted:
        return Evidence("same_accession", SAME_ACCESSION, f"accession number {shown}")
    if min(len(got), len(wanted)) >= _MIN_NEAR_LENGTH:
        if edit_distance(got, wanted) == 1:
            what = (
                "two neighbouring characters swapped"
                if is_transposition(got, wanted)
                else "one character differs"
            )
            return Evidence("near_accession", NEAR_ACCESSION, f"accession number {shown}: {what}")
        if got in wanted or wanted in got:
            return Evidence(
                "contained_accession",
                CONTAINED_ACCESSION,
                f"accession number {shown} inside {received.accession_number!r}"
                if wanted in got
                else f"{received.accession_number!r} is part of accession number {shown}",
            )
    return None


def _score(evidence: Iterable[Evidence]) -> int:
    return max(0, min(100, sum(e.points for e in evidence)))


def score_patient(held: HeldStudy, patient: Patient) -> Candidate:
    """The patient as a candidate to assign the study to."""
    evidence = identity_evidence(held.received, patient)
    return Candidate(CandidateKind.PATIENT, _score(evidence), evidence, patient)


def score_order(held: HeldStudy, order: Order, patient: Patient | None) -> Candidate:
    """The order (with its registered patient, when known) as a candidate to match to."""
    evidence = (
        identity_evidence(held.received, patient) if patient is not None else ()
    ) + order_evidence(held, order)
    return Candidate(CandidateKind.ORDER, _score(evidence), evidence, patient, order)


def rank_candidates(
    held: HeldStudy,
    orders: Iterable[tuple[Order, Patient | None]],
    patients: Iterable[Patient],
    *,
    limit: int = 10,
    min_score: int = MIN_SCORE,
) -> list[Candidate]:
    """The best candidates, highest score first; cancelled orders and weak fits left out.

    Ties go to orders before patients, then by accession number or patient ID, so the
    ranking does not depend on the order the candidates were found in.
    """
    found: dict[tuple[CandidateKind, str, str], Candidate] = {}
    for order, patient in orders:
        if order.status is not OrderStatus.CANCELLED:
            found[(CandidateKind.ORDER, order.accession_number, "")] = score_order(
                held, order, patient
            )
    for patient in patients:
        p = patient.primary
        found[(CandidateKind.PATIENT, p.value, p.issuer)] = score_patient(held, patient)
    kind_rank = {CandidateKind.ORDER: 0, CandidateKind.PATIENT: 1}
    ranked = sorted(
        ((key, c) for key, c in found.items() if c.score >= min_score),
        key=lambda kc: (-kc[1].score, kind_rank[kc[0][0]], kc[0][1], kc[0][2]),
    )
    return [c for _, c in ranked[:limit]]


__all__ = [
    "MIN_SCORE",
    "Candidate",
    "CandidateKind",
    "Evidence",
    "HeldStudy",
    "birth_date_variants",
    "edit_distance",
    "identity_evidence",
    "is_transposition",
    "order_evidence",
    "rank_candidates",
    "score_order",
    "score_patient",
    "similarity",
    "typing_variants",
]
