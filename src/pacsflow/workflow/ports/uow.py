"""One atomic transaction over every repository."""

from __future__ import annotations

from typing import Protocol

from pacsflow.workflow.ports.accounts import AccountRepository
from pacsflow.workflow.ports.audit import AuditLog
from pacsflow.workflow.ports.exception_queue import ExceptionIndex, ExceptionRepository
from pacsflow.workflow.ports.jobs import JobQueue
from pacsflow.workflow.ports.kpis import EventLog
from pacsflow.workflow.ports.messages import MessageJournal
from pacsflow.workflow.ports.orders import OrderRepository
from pacsflow.workflow.ports.patients import PatientRepository
from pacsflow.workflow.ports.prefetch import PrefetchStore
from pacsflow.workflow.ports.procedure_steps import ProcedureStepRepository
from pacsflow.workflow.ports.reading import ReadingStore
from pacsflow.workflow.ports.reconciliation import ReconciliationLog
from pacsflow.workflow.ports.reports import ReportStore
from pacsflow.workflow.ports.routing import RoutingStore
from pacsflow.workflow.ports.settings_log import SettingsLog
from pacsflow.workflow.ports.studies import StudyRepository


class UnitOfWork(Protocol):
    """One atomic transaction over every repository."""

    accounts: AccountRepository
    audit: AuditLog
    reconciliations: ReconciliationLog
    patients: PatientRepository
    orders: OrderRepository
    studies: StudyRepository
    exceptions: ExceptionRepository
    exception_index: ExceptionIndex
    events: EventLog
    journal: MessageJournal
    procedure_steps: ProcedureStepRepository
    jobs: JobQueue
    routing: RoutingStore
    prefetch: PrefetchStore
    reports: ReportStore
    reading: ReadingStore
    settings_log: SettingsLog

    def __enter__(self) -> UnitOfWork:
        """Begin the transaction."""
        ...

    def __exit__(self, *exc: object) -> None:
        """Roll back whatever was not committed."""
        ...

    def commit(self) -> None:
        """Make every change durable."""
        ...


class UnitOfWorkFactory(Protocol):
    """Makes a new unit of work."""

    def __call__(self, *, read_only: bool = False) -> UnitOfWork:
        """A fresh unit of work; read_only promises it will not write (it may run concurrently)."""
        ...


__all__ = [
    "UnitOfWork",
    "UnitOfWorkFactory",
]
