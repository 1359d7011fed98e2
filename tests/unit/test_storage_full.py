"""Ingest when no space is left: refused whole (object, index, audit record), and alerted."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest

from pacsflow.adapters.db import SqlUnitOfWorkFactory
from pacsflow.domain.audit import Action, ActiveParticipant, AuditSource, EventId, ObjectKind
from pacsflow.domain.audit_chain import from_canonical
from pacsflow.domain.errors import StorageFull
from pacsflow.domain.studies import ArrivedInstance
from pacsflow.workflow.audit import AuditTrail
from pacsflow.workflow.ingest import Ingest
from pacsflow.workflow.storage_alarm import STORAGE_FULL
from tests import factories as f
from tests.fakes import FixedClock, InMemoryBlobStore, memory_uow

SENDER = ActiveParticipant(user_id="MOD1", is_requestor=True, network_access_point="10.0.0.9")
RECEIVER = ActiveParticipant(user_id="PACSFLOW")


class FullBlobStore(InMemoryBlobStore):
    """Refuses every object while full."""

    def __init__(self) -> None:
        super().__init__()
        self.full = False

    def put_bytes(self, key: str, data: bytes) -> int:
        if self.full:
            raise StorageFull("cannot store object: No space left on device")
        return super().put_bytes(key, data)


class FullDatabase:
    """Units of work whose commit fails for lack of space while full."""

    def __init__(self, inner: SqlUnitOfWorkFactory) -> None:
        self.inner = inner
        self.full = False

    def __call__(self, *args: Any, **kw: Any) -> Any:
        uow = self.inner(*args, **kw)
        if self.full:

            def commit() -> None:
                raise StorageFull("database commit failed: database or disk is full")

            uow.commit = commit  # type: ignore[method-assign]
        return uow


class Env:
    def __init__(self) -> None:
        self.db = memory_uow()
        self.uow = FullDatabase(self.db)
        self.clock = FixedClock()
        self.blobs = FullBlobStore()
        trail = AuditTrail(self.db, self.clock, AuditSource("PACSFLOW"))
        self.ingest = Ingest(self.uow, self.blobs, self.clock, audit=trail)

    def arrived(self) -> ArrivedInstance:
        return f.arrived(f.received(f.patient()))

    def store(self, arrived: ArrivedInstance, *, audited: bool = True) -> Any:
        return self.ingest.receive(
            arrived, b"DICM", requestor=SENDER, receiver=RECEIVER if audited else None
        )

    def transfers(self) -> list[str]:
        """The studies audited as stored (110104 C)."""
        with self.db(read_only=True) as uow:
            records = uow.audit.search(limit=1000)
        return [
            o.id
            for e in (from_canonical(r.canonical) for r in records)
            if (e.event_id, e.action) == (EventId.INSTANCES_TRANSFERRED, Action.CREATE)
            for o in e.objects
            if o.kind is ObjectKind.STUDY
        ]

    def alerts(self) -> list[tuple[str, str, int]]:
        with self.db(read_only=True) as uow:
            return [(a.kind, a.peer, a.count) for a in uow.routing.alerts()]


@pytest.fixture
def env() -> Env:
    return Env()


def test_the_transfer_is_audited_in_the_transaction_that_indexes_the_instance(env: Env) -> None:
    first, again = env.arrived(), env.arrived()
    env.store(first)
    env.store(again, audited=False)  # a later instance of the association's study
    assert env.transfers() == [first.instance.study_instance_uid]
    with env.db(read_only=True) as uow:
        [record] = uow.audit.search(limit=10)
    event = from_canonical(record.canonical)
    assert [p.user_id for p in event.participants] == ["MOD1", "PACSFLOW"]


def test_an_object_the_blob_store_has_no_space_for_is_refused_and_alerted(env: Env) -> None:
    env.blobs.full = True
    arrived = env.arrived()
    with pytest.raises(StorageFull):
        env.store(arrived)
    with pytest.raises(StorageFull):
        env.store(env.arrived())
    assert env.blobs.objects == {}
    assert env.transfers() == []
    assert env.alerts() == [(STORAGE_FULL, "MOD1", 2)]


def test_when_the_database_is_full_object_index_and_audit_record_are_refused_together(
    env: Env,
) -> None:
    env.uow.full = True
    refused = env.arrived()
    with pytest.raises(StorageFull):
        env.store(refused)
    assert env.blobs.objects == {}  # the stored file was removed again
    assert env.transfers() == []  # not stored, not audited
    assert env.alerts() == []  # the alert could not be written either: kept

    env.uow.full = False
    stored = env.arrived()
    env.store(stored)
    assert env.transfers() == [stored.instance.study_instance_uid]
    assert env.alerts() == [(STORAGE_FULL, "MOD1", 1)]  # recorded with the next success


def test_a_spool_file_that_runs_out_of_space_drops_the_rest_and_removes_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pacsflow.adapters.dicom.spool import SpoolFile, refusal

    spool = SpoolFile(tmp_path / "rx-1.dcm")
    assert spool.write(b"x" * 10) == 10
    spool.flush()

    def no_space(*_: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    assert spool._file is not None
    monkeypatch.setattr(spool._file, "write", no_space)
    assert spool.write(b"y" * 10) == 10  # taken, not raised: the association goes on
    assert spool.write(b"z" * 10) == 10
    spool.close()
    assert spool.error is not None
    assert spool.error.errno == errno.ENOSPC
    assert not (tmp_path / "rx-1.dcm").exists()
    assert isinstance(refusal(spool.error), StorageFull)
