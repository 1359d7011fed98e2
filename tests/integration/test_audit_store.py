"""The SQL audit trail after `pacsflow db upgrade`: append, search, verify, tamper, race."""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from pacsflow.adapters.db import SqlUnitOfWorkFactory, make_engine, upgrade
from pacsflow.adapters.db.audit import audit_chain_head, run_verify
from pacsflow.adapters.db.tables import metadata
from pacsflow.domain import audit as a
from pacsflow.domain import audit_chain, audit_events
from pacsflow.domain.audit import ActiveParticipant, AuditSource, EventId
from pacsflow.domain.audit_chain import ChainHead, chain_hash
from pacsflow.domain.errors import TransientError
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier
from pacsflow.workflow.audit import AuditQuery, AuditTrail
from tests.fakes import FixedClock

SOURCE = AuditSource("PACSFLOW")
T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
AUDITOR = ActiveParticipant("audrey")


def pid(value: str) -> PatientIdentifier:
    return PatientIdentifier(PatientId(value), Issuer("HOSP"))


@dataclass
class Store:
    """A migrated database and a way to run SQL as an attacker with direct access."""

    engine: sa.Engine
    dialect: str
    raw: Callable[[str], None]

    def sessions(self) -> SqlUnitOfWorkFactory:
        return SqlUnitOfWorkFactory(self.engine)


def _sqlite_store(tmp_path: Path) -> Iterator[Store]:
    path = tmp_path / "audit.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)

    def raw(sql: str) -> None:
        with sqlite3.connect(path) as db:
            db.executescript(sql)

    yield Store(engine, "sqlite", raw)
    engine.dispose()


def _pg_store(url: str) -> Iterator[Store]:
    upgrade(url)
    engine = make_engine(url)

    def raw(sql: str) -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql(sql)

    yield Store(engine, "postgresql", raw)
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        yield from _sqlite_store(tmp_path)
        return
    yield from _pg_store(request.getfixturevalue("pg_database_url"))


def _disable_guards(store: Store) -> None:
    """What an attacker with database access does first."""
    if store.dialect == "sqlite":
        with store.engine.connect() as conn:
            names = list(
                conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'")
                .scalars()
                .all()
            )
        store.raw("".join(f"DROP TRIGGER {name};" for name in names))
    else:
        store.raw(
            "ALTER TABLE audit_records DISABLE TRIGGER USER;"
            "ALTER TABLE audit_patients DISABLE TRIGGER USER;"
            "ALTER TABLE audit_chain_head DISABLE TRIGGER USER"
        )


def fill(store: Store) -> AuditTrail:
    clock = FixedClock(T0)
    trail = AuditTrail(store.sessions(), clock, SOURCE)
    alice = ActiveParticipant("alice", network_access_point="10.0.0.7")
    ct01 = ActiveParticipant("CT01", network_access_point="127.0.0.1")
    node = ActiveParticipant("PACSFLOW")
    steps = [
        audit_events.user_authentication(SOURCE, alice, T0),
        audit_events.patient_record(
            SOURCE,
            alice,
            T0 + timedelta(minutes=1),
            action=a.Action.UPDATE,
            patients=[pid("P001"), pid("P002")],
        ),
        audit_events.instances_transferred(
            SOURCE,
            ct01,
            node,
            T0 + timedelta(minutes=2),
            patients=[pid("P001")],
            studies=[audit_events.study_object("1.2.3", ["ACC1"])],
        ),
        audit_events.query(
            SOURCE,
            ct01,
            T0 + timedelta(minutes=3),
            query_text="PatientID=P002",
            patients=[pid("P002")],
        ),
        audit_events.user_authentication(
            SOURCE,
            ActiveParticipant("bob"),
            T0 + timedelta(minutes=4),
            outcome=a.Outcome.MINOR_FAILURE,
        ),
    ]
    for event in steps:
        trail.record(event)
    return trail


def test_records_are_chained_from_genesis(store: Store) -> None:
    fill(store)
    with store.sessions()() as s:
        head = s.audit.head()
        records = s.audit.records(after=0, up_to=head.last_id)
    assert [r.id for r in records] == [1, 2, 3, 4, 5]
    assert records[0].prev_hash == audit_chain.GENESIS_HASH
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == before.hash
        assert after.hash == chain_hash(after.prev_hash, after.canonical)
    assert head == ChainHead(5, records[-1].hash)
    assert records[2].event().event_id is EventId.INSTANCES_TRANSFERRED


def test_search_by_patient_user_and_time(store: Store) -> None:
    trail = fill(store)
    with store.sessions()() as s:
        log = s.audit
        assert [r.id for r in log.search(patient_id="P001")] == [3, 2]
        assert [r.id for r in log.search(patient_id="P002")] == [4, 2]
        assert [r.id for r in log.search(user="alice")] == [2, 1]
        assert [r.id for r in log.search(user="CT01", patient_id="P002")] == [4]
        window = log.search(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3))
        assert [r.id for r in window] == [3, 2]
        assert [r.id for r in log.search(limit=2)] == [5, 4]
        assert log.search(patient_id="NOPE") == []
        (found,) = log.search(user="bob")
    assert found.index.outcome == 4
    assert found.index.event_time == T0 + timedelta(minutes=4)
    assert found.recorded_at == T0
    assert found.index.patients == ()
    # Through the use case, the auditor's search is itself recorded.
    assert [r.id for r in trail.search(AuditQuery(patient_id="P001"), AUDITOR)] == [3, 2]
    with store.sessions()() as s:
        (used,) = s.audit.search(user="audrey")
    assert used.index.event_id == "110101"


def test_an_untouched_trail_verifies(store: Store) -> None:
    fill(store)
    code, message = run_verify(store.sessions())
    assert code == 0, message
    assert "5 records" in message


def test_an_empty_trail_verifies(store: Store) -> None:
    assert run_verify(store.sessions())[0] == 0


def test_the_database_refuses_updates_and_deletes(store: Store) -> None:
    fill(store)
    for statement in (
        "UPDATE audit_records SET user_id = 'mallory' WHERE id = 2",
        "DELETE FROM audit_records WHERE id = 5",
        "DELETE FROM audit_patients",
        "UPDATE audit_chain_head SET last_id = 3",
        "DELETE FROM audit_chain_head",
        *(["TRUNCATE audit_records CASCADE"] if store.dialect == "postgresql" else []),
    ):
        with pytest.raises((sqlite3.DatabaseError, sa.exc.DBAPIError)):
            store.raw(statement)
    assert run_verify(store.sessions())[0] == 0


def test_an_altered_record_is_found(store: Store) -> None:
    fill(store)
    _disable_guards(store)
    store.raw(
        "UPDATE audit_records SET canonical = replace(canonical, 'PatientID=P002', "
        "'PatientID=P009') WHERE id = 4"
    )
    code, message = run_verify(store.sessions())
    assert code == 1
    assert "record 4" in message
    assert "altered" in message


def test_an_altered_record_with_its_hash_recomputed_breaks_the_next_link(store: Store) -> None:
    fill(store)
    with store.sessions()() as s:
        record = s.audit.records(after=1, up_to=2)[0]
    body = record.canonical.replace(b'"U"', b'"R"')
    _disable_guards(store)
    store.raw(
        f"UPDATE audit_records SET canonical = '{body.decode()}', action = 'R', "
        f"hash = '{chain_hash(record.prev_hash, body)}' WHERE id = 2"
    )
    code, message = run_verify(store.sessions())
    assert code == 1
    assert "record 3" in message


def test_a_hidden_patient_is_found(store: Store) -> None:
    fill(store)
    _disable_guards(store)
    store.raw("DELETE FROM audit_patients WHERE record_id = 3")
    code, message = run_verify(store.sessions())
    assert (code, "record 3" in message) == (1, True)


@pytest.mark.parametrize(
    ("record_id", "statement", "broken"),
    [
        (2, "DELETE FROM audit_records WHERE id = 2", "record 3"),
        (5, "DELETE FROM audit_records WHERE id = 5", "record 4"),
        (3, "UPDATE audit_records SET id = 13 WHERE id = 3", "record 4"),
    ],
)
def test_a_removed_or_moved_record_is_found(
    store: Store, record_id: int, statement: str, broken: str
) -> None:
    fill(store)
    _disable_guards(store)
    store.raw(f"DELETE FROM audit_patients WHERE record_id = {record_id}; {statement}")
    code, message = run_verify(store.sessions())
    assert code == 1
    assert broken in message


def test_concurrent_appends_keep_one_chain(store: Store) -> None:
    trail = AuditTrail(store.sessions(), FixedClock(T0), SOURCE)
    start = threading.Barrier(8)

    def work(n: int) -> None:
        start.wait()
        user = ActiveParticipant(f"user{n}")
        for i in range(25):
            trail.record(
                audit_events.instances_accessed(SOURCE, user, T0, patients=[pid(f"P{n}-{i}")])
            )

    with ThreadPoolExecutor(8) as pool:
        for done in [pool.submit(work, n) for n in range(8)]:
            done.result()
    code, message = run_verify(store.sessions())
    assert code == 0, message
    assert "200 records" in message
    with store.sessions()() as s:
        assert s.audit.head().last_id == 200
        assert len(s.audit.search(user="user3", limit=1000)) == 25


def test_append_without_a_chain_head_is_refused(store: Store) -> None:
    _disable_guards(store)
    store.raw("DELETE FROM audit_chain_head")
    trail = AuditTrail(store.sessions(), FixedClock(T0), SOURCE)
    with pytest.raises(audit_chain.AuditChainBroken):
        trail.record(audit_events.user_authentication(SOURCE, AUDITOR, T0))
    assert run_verify(store.sessions())[0] == 2


def test_an_unreachable_database_is_a_transient_failure(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/missing/dir/audit.db")
    trail = AuditTrail(SqlUnitOfWorkFactory(engine), FixedClock(T0), SOURCE)
    with pytest.raises(TransientError):
        trail.record(audit_events.user_authentication(SOURCE, AUDITOR, T0))
    code, message = run_verify(SqlUnitOfWorkFactory(engine))
    assert code == 2
    assert "could not be read" in message


def test_an_unmigrated_database_is_a_transient_failure(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/empty.db")
    trail = AuditTrail(SqlUnitOfWorkFactory(engine), FixedClock(T0), SOURCE)
    with pytest.raises(TransientError):
        trail.record(audit_events.user_authentication(SOURCE, AUDITOR, T0))
    with pytest.raises(TransientError), SqlUnitOfWorkFactory(engine)() as s:
        s.audit.search(user="x")
    assert run_verify(SqlUnitOfWorkFactory(engine))[0] == 2


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_create_all_builds_the_same_guarded_schema(
    dialect: str, request: pytest.FixtureRequest
) -> None:
    with contextlib.ExitStack() as stack:
        url = "sqlite://" if dialect == "sqlite" else request.getfixturevalue("pg_database_url")
        engine = sa.create_engine(url)
        stack.callback(engine.dispose)
        metadata.create_all(engine)
        trail = AuditTrail(SqlUnitOfWorkFactory(engine), FixedClock(T0), SOURCE)
        trail.record(audit_events.user_authentication(SOURCE, AUDITOR, T0))
        assert run_verify(SqlUnitOfWorkFactory(engine))[0] == 0
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
            conn.execute(audit_chain_head.delete())
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
            conn.exec_driver_sql("UPDATE audit_records SET user_id = 'mallory'")
