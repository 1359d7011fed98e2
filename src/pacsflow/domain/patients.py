"""Patients and their identifiers as registered by the HIS/EHR."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import NewType

PatientId = NewType("PatientId", str)
Issuer = NewType("Issuer", str)


@dataclass(frozen=True, slots=True)
class PatientIdentifier:
    """One identifier of a patient, qualified by its assigning authority (issuer)."""

    value: PatientId
    issuer: Issuer = Issuer("")


@dataclass(frozen=True, slots=True)
class PersonName:
    """A person's name in its components (DICOM PN / HL7 XPN)."""

    family: str = ""
    given: str = ""
    middle: str = ""
    prefix: str = ""
    suffix: str = ""

    def is_empty(self) -> bool:
        """True when no component carries text."""
        return not any((self.family, self.given, self.middle, self.prefix, self.suffix))

    def display(self) -> str:
        """Family, given middle (a human-readable form)."""
        rest = " ".join(p for p in (self.given, self.middle) if p)
        return f"{self.family}, {rest}" if rest else self.family


@dataclass(frozen=True, slots=True)
class Demographics:
    """What identifies a patient to a person: name, birth date, sex."""

    name: PersonName = PersonName()
    birth_date: date | None = None
    sex: str = ""


@dataclass(frozen=True, slots=True)
class Patient:
    """A registered patient: identifiers (first is primary) and demographics."""

    identifiers: tuple[PatientIdentifier, ...]
    demographics: Demographics

    @property
    def primary(self) -> PatientIdentifier:
        """The identifier the patient is known by first."""
        return self.identifiers[0]


def fold_text(text: str) -> str:
    """Case-, accent- and space-insensitive form of a text, for comparing manual entries."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().replace("^", " ").replace(",", " ").split())


def normalize_identifier(value: str) -> str:
    """An identifier without case, separators or leading zeros (interface translation noise)."""
    kept = "".join(c for c in value.casefold() if c.isalnum())
    return kept.lstrip("0") or kept


__all__ = [
    "Demographics",
    "Issuer",
    "Patient",
    "PatientId",
    "PatientIdentifier",
    "PersonName",
    "fold_text",
    "normalize_identifier",
]
