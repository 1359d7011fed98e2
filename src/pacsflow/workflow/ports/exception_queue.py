"""The exceptions queue and its searches."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Protocol

from pacsflow.domain.exception_queue import ExceptionHistory, ExceptionRecord, HoldReason
from pacsflow.domain.matching import ExceptionReason, MismatchSource, ReceivedIdentity
from pacsflow.domain.orders import AccessionNumber
from pacsflow.domain.patients import PatientIdentifier
from pacsflow.domain.uids import Uid


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


__all__ = [
    "ExceptionIndex",
    "ExceptionRepository",
]
