"""The audit trail: record audit events durably, search them for auditors, verify the chain.

Recording is part of the action it audits, not a side effect: when the store cannot take
the record, `record` raises TransientError and the caller fails the action (a query is not
answered, a login is refused) rather than let it happen unaudited. Changes made inside a
unit of work append their event to `uow.audit` in that same transaction, so the change and
its record commit together, then hand the event to `AuditTrail.forward` after the commit.

The database is the source of truth. Forwarding to a syslog collector (ATNA, RFC 5425) is
best-effort and never fails or delays an action.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from pacsflow.domain.audit import ActiveParticipant, AuditEvent, AuditSource, Outcome
from pacsflow.domain.audit_chain import AuditRecord, ChainBreak, ChainHead, ChainVerifier
from pacsflow.domain.audit_events import audit_log_used
from pacsflow.workflow.ports.audit import AuditForwarder, AuditSessionFactory
from pacsflow.workflow.ports.clock import Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """What an auditor searches for: a patient, a user, a time window."""

    patient_id: str | None = None
    user: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The result of checking the whole chain."""

    count: int
    head: ChainHead
    first_broken: int | None = None
    reason: str = ""
    breaks: tuple[ChainBreak, ...] = ()

    @property
    def is_intact(self) -> bool:
        """True when no record was altered, removed or reordered."""
        return self.first_broken is None


def verify_trail(
    sessions: AuditSessionFactory, *, batch_size: int = 1000, max_breaks: int = 100
) -> VerifyReport:
    """Check the chain up to the head read first, one short transaction per batch.

    Short transactions keep writers moving while a long log is checked (SQLite holds its
    write lock for a whole transaction). Records appended meanwhile lie past the head and
    wait for the next run.
    """
    with sessions() as s:
        head = s.audit.head()
    verifier = ChainVerifier()
    count = 0
    while verifier.previous_id < head.last_id:
        with sessions() as s:
            batch = s.audit.records(
                after=verifier.previous_id, up_to=head.last_id, limit=batch_size
            )
        if not batch:
            break
        for record in batch:
            verifier.feed(record)
        count += len(batch)
    verifier.finish(head)
    breaks = tuple(verifier.breaks[:max_breaks])
    first = breaks[0] if breaks else None
    return VerifyReport(
        count=count,
        head=head,
        first_broken=first.record_id if first else None,
        reason=first.reason if first else "",
        breaks=breaks,
    )


class AuditTrail:
    """Records audit events, answers auditors' searches and verifies the chain."""

    def __init__(
        self,
        sessions: AuditSessionFactory,
        clock: Clock,
        source: AuditSource,
        forwarder: AuditForwarder | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._forwarder = forwarder
        self.source = source

    def record(self, event: AuditEvent) -> int:
        """Durably record an event in its own transaction, then forward it; its record id.

        Raises TransientError when the store cannot take it: the audited action must fail.
        Never call it while a unit of work is open in the same thread (on SQLite the second
        writer would wait for the first): append to `uow.audit` there instead.
        """
        with self._sessions() as s:
            record_id = s.audit.append(event, self._clock.now())
            s.commit()
        self.forward(event)
        return record_id

    def forward(self, event: AuditEvent) -> None:
        """Hand an already committed event to the collector, if one is configured."""
        if self._forwarder is not None:
            self._forwarder.send(event)

    def search(self, flt: AuditQuery, auditor: ActiveParticipant) -> list[AuditRecord]:
        """Records matching the query; the search itself is audited (Audit Log Used)."""
        used = audit_log_used(self.source, auditor, self._clock.now())
        with self._sessions() as s:
            found = list(
                s.audit.search(
                    patient_id=flt.patient_id,
                    user=flt.user,
                    since=flt.since,
                    until=flt.until,
                    limit=flt.limit,
                )
            )
            s.audit.append(used, self._clock.now())
            s.commit()
        self.forward(used)
        return found

    @property
    def clock(self) -> Clock:
        """The clock the trail stamps its records with (adapters stamp their events with it)."""
        return self._clock

    def refused(self, auditor: ActiveParticipant) -> int:
        """Record a refused attempt to read the audit log (Audit Log Used, outcome 4)."""
        event = audit_log_used(
            self.source, auditor, self._clock.now(), outcome=Outcome.MINOR_FAILURE
        )
        return self.record(event)

    def verify(self, *, batch_size: int = 1000) -> VerifyReport:
        """Check the whole chain (see verify_trail)."""
        report = verify_trail(self._sessions, batch_size=batch_size)
        if not report.is_intact:
            log.error("audit trail broken at record %s: %s", report.first_broken, report.reason)
        return report


__all__ = [
    "AuditQuery",
    "AuditTrail",
    "VerifyReport",
    "verify_trail",
]
