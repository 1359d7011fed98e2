"""The audit log and the sessions that reach it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from pacsflow.domain.audit import AuditEvent
from pacsflow.domain.audit_chain import AuditRecord, ChainHead


class AuditLog(Protocol):
    """The append-only, hash-chained store of audit records."""

    def append(self, event: AuditEvent, at: datetime) -> int:
        """Chain and store an event in the current transaction; its record id."""
        ...

    def search(
        self,
        *,
        patient_id: str | None = None,
        user: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> Sequence[AuditRecord]:
        """Records matching every filter given (event time in [since, until)), newest first."""
        ...

    def head(self) -> ChainHead:
        """The last record appended, as the store's chain head says."""
        ...

    def records(self, *, after: int = 0, up_to: int, limit: int = 1000) -> Sequence[AuditRecord]:
        """Records with after < id <= up_to, in chain order, at most limit of them."""
        ...


class AuditSession(Protocol):
    """A transaction that can reach the audit log (a unit of work with an `audit` member)."""

    audit: AuditLog

    def __enter__(self) -> AuditSession:
        """Begin the transaction."""
        ...

    def __exit__(self, *exc: object) -> None:
        """Roll back whatever was not committed."""
        ...

    def commit(self) -> None:
        """Make every change durable."""
        ...


class AuditSessionFactory(Protocol):
    """Makes a new audit session."""

    def __call__(self) -> AuditSession:
        """A fresh session."""
        ...


class AuditForwarder(Protocol):
    """Hands committed events to an external collector; never blocks, never raises."""

    def send(self, event: AuditEvent) -> None:
        """Queue an event for delivery."""
        ...


__all__ = [
    "AuditForwarder",
    "AuditLog",
    "AuditSession",
    "AuditSessionFactory",
]
