"""The audit trail use case: record, forward, search (itself audited), verify."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from pacsflow.domain import audit as a
from pacsflow.domain import audit_chain, audit_events
from pacsflow.domain.audit import ActiveParticipant, AuditEvent, AuditSource, EventId, Outcome
from pacsflow.domain.audit_chain import AuditRecord, ChainHead, canonical, chain_hash, index_of
from pacsflow.domain.errors import TransientError
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier
from pacsflow.workflow.audit import AuditQuery, AuditTrail, verify_trail
from pacsflow.workflow.ports.audit import AuditLog, AuditSession
from tests.fakes import FixedClock

SOURCE = AuditSource("PACSFLOW")
ALICE = ActiveParticipant("alice")
AUDITOR = ActiveParticipant("audrey", network_access_point="10.0.0.9")
P1 = PatientIdentifier(PatientId("P001"), Issuer("HOSP"))


class InMemoryAuditLog:
    """A chained audit log in a list; appends become visible on commit."""

    def __init__(self) -> None:
        self.stored: list[AuditRecord] = []
        self.pending: list[AuditRecord] = []
        self.is_down = False
        self.kept_head: ChainHead | None = None

    def append(self, event: AuditEvent, at: datetime) -> int:
        if self.is_down:
            raise TransientError("audit store down")
        chain = self.stored + self.pending
        previous = chain[-1].hash if chain else audit_chain.GENESIS_HASH
        body = canonical(event)
        record = AuditRecord(
            len(chain) + 1, at, body, previous, chain_hash(previous, body), index_of(event)
        )
        self.pending.append(record)
        return record.id

    def search(
        self,
        *,
        patient_id: str | None = None,
        user: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> Sequence[AuditRecord]:
        found = [
            r
            for r in reversed(self.stored)
            if (patient_id is None or any(p.value == patient_id for p in r.index.patients))
            and (user is None or r.index.user_id == user)
            and (since is None or r.index.event_time >= since)
            and (until is None or r.index.event_time < until)
        ]
        return found[:limit]

    def head(self) -> ChainHead:
        if self.kept_head is not None:
            return self.kept_head
        return ChainHead(self.stored[-1].id, self.stored[-1].hash) if self.stored else ChainHead()

    def records(self, *, after: int = 0, up_to: int, limit: int = 1000) -> Sequence[AuditRecord]:
        return [r for r in self.stored if after < r.id <= up_to][:limit]


class FakeSession:
    audit: AuditLog

    def __init__(self, log: InMemoryAuditLog) -> None:
        self._log = log
        self.audit = log

    def __enter__(self) -> FakeSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self._log.pending.clear()

    def commit(self) -> None:
        self._log.stored.extend(self._log.pending)
        self._log.pending.clear()


class Sessions:
    def __init__(self) -> None:
        self.log = InMemoryAuditLog()
        self.opened = 0

    def __call__(self) -> AuditSession:
        self.opened += 1
        return FakeSession(self.log)


class Collector:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def send(self, event: AuditEvent) -> None:
        self.events.append(event)


@pytest.fixture
def sessions() -> Sessions:
    return Sessions()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 11, 28, 8, 0, tzinfo=UTC))


def login(clock: FixedClock, user: str = "alice", outcome: Outcome = Outcome.SUCCESS) -> AuditEvent:
    return audit_events.user_authentication(
        SOURCE, ActiveParticipant(user), clock.now(), outcome=outcome
    )


def test_record_commits_then_forwards(sessions: Sessions, clock: FixedClock) -> None:
    collector = Collector()
    trail = AuditTrail(sessions, clock, SOURCE, collector)
    event = login(clock)
    assert trail.record(event) == 1
    assert [r.event() for r in sessions.log.stored] == [event]
    assert collector.events == [event]


def test_record_fails_the_action_when_the_store_is_down(
    sessions: Sessions, clock: FixedClock
) -> None:
    collector = Collector()
    trail = AuditTrail(sessions, clock, SOURCE, collector)
    sessions.log.is_down = True
    with pytest.raises(TransientError):
        trail.record(login(clock))
    assert collector.events == []  # nothing forwarded that is not stored


def test_without_a_collector_recording_still_works(sessions: Sessions, clock: FixedClock) -> None:
    trail = AuditTrail(sessions, clock, SOURCE)
    trail.record(login(clock))
    trail.forward(login(clock))
    assert len(sessions.log.stored) == 1


def test_search_returns_matches_and_audits_the_search(
    sessions: Sessions, clock: FixedClock
) -> None:
    collector = Collector()
    trail = AuditTrail(sessions, clock, SOURCE, collector)
    trail.record(login(clock, "alice"))
    clock.advance(60)
    trail.record(
        audit_events.patient_record(
            SOURCE, ALICE, clock.now(), action=a.Action.UPDATE, patients=[P1]
        )
    )
    clock.advance(60)
    trail.record(login(clock, "bob"))

    by_alice = trail.search(AuditQuery(user="alice"), AUDITOR)
    assert [r.id for r in by_alice] == [2, 1]
    by_patient = trail.search(AuditQuery(patient_id="P001"), AUDITOR)
    assert [r.id for r in by_patient] == [2]
    start = datetime(2026, 11, 28, 8, 1, tzinfo=UTC)
    window = trail.search(AuditQuery(since=start, until=start + timedelta(minutes=1)), AUDITOR)
    assert [r.event().event_id for r in window] == [EventId.PATIENT_RECORD]

    used = [r.event() for r in sessions.log.stored if r.index.event_id == "110101"]
    assert len(used) == 3
    assert {e.requestor.user_id for e in used} == {"audrey"}
    assert collector.events[-1].event_id is EventId.AUDIT_LOG_USED


def test_a_refused_audit_read_is_recorded_as_a_failure(
    sessions: Sessions, clock: FixedClock
) -> None:
    trail = AuditTrail(sessions, clock, SOURCE)
    trail.refused(ActiveParticipant("mallory"))
    (record,) = sessions.log.stored
    assert (record.index.event_id, record.index.outcome, record.index.user_id) == (
        "110101",
        4,
        "mallory",
    )


def test_verify_reads_in_batches_up_to_the_head(sessions: Sessions, clock: FixedClock) -> None:
    trail = AuditTrail(sessions, clock, SOURCE)
    for _ in range(7):
        trail.record(login(clock))
        clock.advance(1)
    before = sessions.opened
    report = trail.verify(batch_size=3)
    assert report.is_intact
    assert (report.count, report.head.last_id) == (7, 7)
    assert sessions.opened - before == 1 + 3  # the head, then batches of 3, 3 and 1


def test_verify_of_an_empty_trail_is_intact(sessions: Sessions) -> None:
    report = verify_trail(sessions)
    assert report.is_intact
    assert report.count == 0


def test_verify_reports_the_first_broken_record(sessions: Sessions, clock: FixedClock) -> None:
    trail = AuditTrail(sessions, clock, SOURCE)
    for user in ("a", "b", "c", "d"):
        trail.record(login(clock, user))
    records = sessions.log.stored
    records[1] = replace(records[1], canonical=records[1].canonical.replace(b'"b"', b'"x"'))
    records[3] = replace(records[3], prev_hash="0" * 64)
    report = trail.verify()
    assert not report.is_intact
    assert report.first_broken == 2
    assert "altered" in report.reason
    assert [b.record_id for b in report.breaks] == [2, 4]


def test_verify_notices_removed_newest_records(sessions: Sessions, clock: FixedClock) -> None:
    trail = AuditTrail(sessions, clock, SOURCE)
    for _ in range(3):
        trail.record(login(clock))
    sessions.log.kept_head = sessions.log.head()
    del sessions.log.stored[1:]
    report = trail.verify()
    assert report.first_broken == 1
    assert "removed" in report.reason
    assert report.count == 1
