"""Registered patients and their identifiers (the identity rail)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from pacsflow.domain.patients import Patient, PatientIdentifier


class PatientRepository(Protocol):
    """Registered patients, found by any of their identifiers."""

    def find(self, identifier: PatientIdentifier) -> Patient | None:
        """The patient holding this identifier (issuer optional when unambiguous).

        Its own identifiers come first (the primary, the others, then the aliases merged or
        changed away), followed by the identifiers of every patient linked to it (A24).
        """
        ...

    def find_many(
        self, identifiers: Iterable[PatientIdentifier]
    ) -> dict[PatientIdentifier, Patient]:
        """The patient holding each identifier, as `find` would, in a fixed number of reads
        however many identifiers are asked; identifiers no patient holds are left out."""
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


__all__ = [
    "PatientRepository",
]
