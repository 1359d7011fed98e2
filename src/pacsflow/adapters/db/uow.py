"""The SQL unit of work: one connection, one transaction, every repository."""

from __future__ import annotations

import sqlalchemy as sa

from pacsflow.adapters.db.accounts import SqlAccountRepository
from pacsflow.adapters.db.audit import SqlAuditLog
from pacsflow.adapters.db.engine import READ_ONLY, writer_lock
from pacsflow.adapters.db.exception_queue import SqlExceptionIndex, SqlExceptionRepository
from pacsflow.adapters.db.jobs import SqlJobQueue
from pacsflow.adapters.db.kpis import SqlEventLog
from pacsflow.adapters.db.messages import SqlMessageJournal
from pacsflow.adapters.db.orders import SqlOrderRepository
from pacsflow.adapters.db.patients import SqlPatientRepository
from pacsflow.adapters.db.prefetch import SqlPrefetchStore
from pacsflow.adapters.db.procedure_steps import SqlProcedureStepRepository
from pacsflow.adapters.db.reading import SqlReadingStore
from pacsflow.adapters.db.reconciliation import SqlReconciliationLog
from pacsflow.adapters.db.reports import SqlReportStore
from pacsflow.adapters.db.routing import SqlRoutingStore
from pacsflow.adapters.db.settings_log import SqlSettingsLog
from pacsflow.adapters.db.studies import SqlStudyRepository
from pacsflow.domain.errors import StorageFull, TransientError
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

#: How long a write transaction waits for the writer lock (SQLite's busy_timeout too).
_LOCK_WAIT = 30.0
#: SQLite's SQLITE_FULL and PostgreSQL's SQLSTATE disk_full: the database has no space left.
_SQLITE_FULL = 13
_PG_DISK_FULL = "53100"


def _unavailable(what: str, exc: sa.exc.OperationalError) -> TransientError:
    """Ours for a database error: StorageFull when the database has no space left."""
    orig = exc.orig
    full = (
        getattr(orig, "sqlite_errorcode", None) == _SQLITE_FULL
        or getattr(orig, "sqlstate", None) == _PG_DISK_FULL
    )
    return (StorageFull if full else TransientError)(f"{what}: {orig}")


class SqlUnitOfWork:
    """A transaction over the repositories; rolled back unless committed."""

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

    def __init__(self, engine: sa.Engine, *, read_only: bool = False) -> None:
        self._engine = engine
        self._read_only = read_only
        self._conn: sa.Connection | None = None
        self._lock = None if read_only else writer_lock(engine)

    def __enter__(self) -> SqlUnitOfWork:
        # As long as SQLite's busy timeout: then fail like a locked database would.
        if self._lock is not None and not self._lock.acquire(timeout=_LOCK_WAIT):
            raise TransientError("database busy: another write transaction holds it")
        try:
            return self._begin()
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise

    def _begin(self) -> SqlUnitOfWork:
        try:
            conn = self._engine.connect()
            if self._read_only:
                conn = conn.execution_options(**{READ_ONLY: True})
            conn.begin()
        except sa.exc.OperationalError as exc:
            raise _unavailable("database unavailable", exc) from exc
        self._conn = conn
        self.accounts = SqlAccountRepository(conn)
        self.audit = SqlAuditLog(conn)
        self.reconciliations = SqlReconciliationLog(conn)
        self.patients = SqlPatientRepository(conn)
        self.orders = SqlOrderRepository(conn)
        self.studies = SqlStudyRepository(conn)
        self.exceptions = SqlExceptionRepository(conn)
        self.exception_index = SqlExceptionIndex(conn)
        self.events = SqlEventLog(conn)
        self.journal = SqlMessageJournal(conn)
        self.procedure_steps = SqlProcedureStepRepository(conn)
        self.jobs = SqlJobQueue(conn)
        self.routing = SqlRoutingStore(conn)
        self.prefetch = SqlPrefetchStore(conn)
        self.reports = SqlReportStore(conn)
        self.reading = SqlReadingStore(conn)
        self.settings_log = SqlSettingsLog(conn)
        return self

    def __exit__(self, *exc: object) -> None:
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                try:
                    if conn.in_transaction():
                        conn.rollback()
                finally:
                    conn.close()
        finally:
            if self._lock is not None and conn is not None:
                self._lock.release()

    def commit(self) -> None:
        """Make every change durable."""
        assert self._conn is not None, "commit outside a unit of work"
        try:
            self._conn.commit()
        except sa.exc.OperationalError as exc:
            raise _unavailable("database commit failed", exc) from exc


class SqlUnitOfWorkFactory:
    """Makes SQL units of work on one engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def __call__(self, *, read_only: bool = False) -> SqlUnitOfWork:
        """A fresh unit of work; a read-only one never waits for writers (SQLite WAL)."""
        return SqlUnitOfWork(self.engine, read_only=read_only)


__all__ = ["SqlUnitOfWork", "SqlUnitOfWorkFactory"]
