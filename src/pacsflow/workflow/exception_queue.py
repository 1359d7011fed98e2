"""Working the exceptions queue: what is overdue, who fits a held study, how the day went."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from pacsflow.domain.calendar import day_span, local_day
from pacsflow.domain.candidates import (
    Candidate,
    HeldStudy,
    birth_date_variants,
    rank_candidates,
    typing_variants,
)
from pacsflow.domain.errors import InvalidInput
from pacsflow.domain.exception_queue import (
    DailyReport,
    ExceptionRecord,
    daily_report,
    is_overdue,
    queue_key,
    targets,
)
from pacsflow.domain.matching import ExceptionReason
from pacsflow.domain.orders import AccessionNumber, Order
from pacsflow.domain.patients import Patient, PatientIdentifier
from pacsflow.workflow.ports.clock import Clock
from pacsflow.workflow.ports.uow import UnitOfWork, UnitOfWorkFactory

#: Open exceptions read to sort the queue (overdue first needs them all, not the oldest N).
QUEUE_SCAN = 10_000
#: Orders scheduled this close to the study date are candidates whatever their identifiers.
SCHEDULE_WINDOW = timedelta(days=2)
#: Rows each candidate search may return.
SEARCH_LIMIT = 100


@dataclass(frozen=True, slots=True)
class QueueItem:
    """An open exception with its age, its reason's target and whether it is past it."""

    exception: ExceptionRecord
    age: timedelta
    target: timedelta
    is_overdue: bool

    @property
    def due_at(self) -> datetime:
        """When the exception should be resolved by."""
        return self.exception.opened_at + self.target


class ExceptionQueue:
    """The read side of reconciliation: the queue in working order, candidates, the report."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        per_reason: Mapping[ExceptionReason, timedelta] | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self.targets = targets(per_reason)

    def open(self, limit: int = 500) -> list[QueueItem]:
        """Open exceptions, overdue first, then oldest first."""
        now = self._clock.now()
        with self._uow(read_only=True) as uow:
            found = uow.exceptions.list_open(max(limit, QUEUE_SCAN))
        items = [
            QueueItem(
                exception=e,
                age=max(timedelta(0), now - e.opened_at),
                target=self.targets[e.reason],
                is_overdue=is_overdue(e.opened_at, e.reason, now, self.targets),
            )
            for e in found
        ]
        items.sort(key=lambda i: queue_key(i.is_overdue, i.exception.opened_at, i.exception.id))
        return items[:limit]

    def candidates(self, exception_id: int, limit: int = 10) -> list[Candidate]:
        """Orders and patients the held study most likely belongs to, best first."""
        with self._uow(read_only=True) as uow:
            exc = uow.exceptions.get(exception_id)
            if exc is None:
                raise InvalidInput(f"no exception {exception_id}", location="exception")
            study = uow.studies.get(exc.study_instance_uid)
            # A study without a Study Date was acquired about when it arrived.
            arrived = (study.received_at if study else None) or exc.opened_at
            held = HeldStudy(
                received=exc.received,
                study_date=(study.study_date if study else None)
                or local_day(arrived, self._clock.zone),
                modalities=study.modalities if study else (),
            )
            patients = self._patients(uow, held)
            orders = self._orders(uow, held, exc, patients)
            for _order, patient in orders:
                if patient is not None:
                    patients.setdefault(patient.primary, patient)
            return rank_candidates(held, orders, patients.values(), limit=limit)

    def _patients(self, uow: UnitOfWork, held: HeldStudy) -> dict[PatientIdentifier, Patient]:
        received = held.received
        name = received.demographics.name
        identifiers = uow.exception_index.candidate_patients(
            identifiers=typing_variants(received.patient.value),
            names=[n for n in (name.family, name.given) if n],
            birth_dates=birth_date_variants(received.demographics.birth_date),
            limit=SEARCH_LIMIT,
        )
        found: dict[PatientIdentifier, Patient] = {}
        for identifier in identifiers:
            patient = uow.patients.find(identifier)
            if patient is not None:
                found.setdefault(patient.primary, patient)
        return found

    def _orders(
        self,
        uow: UnitOfWork,
        held: HeldStudy,
        exc: ExceptionRecord,
        patients: Mapping[PatientIdentifier, Patient],
    ) -> list[tuple[Order, Patient | None]]:
        received = held.received
        accessions = list(typing_variants(received.accession_number))
        if exc.candidate_order:
            accessions.append(exc.candidate_order)
        day = held.study_date
        start = datetime.combine(day, time(), UTC) if day is not None else None
        keys: dict[AccessionNumber, None] = dict.fromkeys(
            uow.exception_index.candidate_orders(
                accessions=accessions,
                patient_ids=sorted(
                    {p.value for key in patients for p in patients[key].identifiers}
                ),
                scheduled_from=start - SCHEDULE_WINDOW if start else None,
                scheduled_to=start + timedelta(days=1) + SCHEDULE_WINDOW if start else None,
                limit=SEARCH_LIMIT,
            )
        )
        by_uid = uow.orders.by_study_uid(received.study_instance_uid)
        if by_uid is not None:
            keys.setdefault(by_uid.accession_number, None)
        found: list[tuple[Order, Patient | None]] = []
        for accession in keys:
            order = uow.orders.by_accession(accession)
            if order is not None:
                found.append(
                    (order, patients.get(order.patient) or uow.patients.find(order.patient))
                )
        return found

    def report(self, day: date | None = None, zone: tzinfo | None = None) -> DailyReport:
        """The day's figures (the day in zone, default the site's; today by default); for
        today, up to now."""
        now = self._clock.now()
        zone = zone or self._clock.zone
        day = day or local_day(now, zone)
        if not 1900 <= day.year < 9999:
            raise InvalidInput(f"{day} is not a day of the exceptions queue", location="day")
        start, end = day_span(day, day, zone)
        if start > now:
            raise InvalidInput(f"{day} has not begun yet", location="day")
        end = min(end, now)
        with self._uow(read_only=True) as uow:
            histories = uow.exception_index.histories(start, end)
        return daily_report(day, start, end, histories, self.targets)


__all__ = ["QUEUE_SCAN", "ExceptionQueue", "QueueItem"]
