"""Ingest: validation, durable storage, indexing, matching, exceptions."""

from __future__ import annotations

from pathlib import Path

import pytest

from pacsflow.domain import commands as cmd
from pacsflow.domain.errors import InvalidInput, MissingIdentifier
from pacsflow.domain.matching import ExceptionReason, Matched, MatchOutcomeKind
from pacsflow.domain.studies import StudyFilter, StudyState
from pacsflow.domain.uids import Uid
from pacsflow.workflow.ingest import Ingest, IngestStatus
from pacsflow.workflow.intake import Intake
from pacsflow.workflow.queries import Queries
from tests import factories as f
from tests.fakes import FixedClock, InMemoryBlobStore, memory_uow
from tests.receiving import receive


@pytest.fixture
def env(tmp_path: Path):
    uow = memory_uow()
    clock = FixedClock()
    blobs = InMemoryBlobStore()
    intake = Intake(uow, clock)
    ingest = Ingest(uow, blobs, clock)
    queries = Queries(uow, blobs)

    def place(p, **kw):
        o = f.order(p, **kw)
        receive(intake, cmd.PlaceOrder(o, p))
        return o

    def store(arrived):
        src = tmp_path / f"{arrived.instance.sop_instance_uid}.dcm"
        src.write_bytes(b"DICM" + arrived.instance.sop_instance_uid.encode())
        return ingest.receive(arrived, src)

    return type(
        "Env",
        (),
        {
            "place": staticmethod(place),
            "store": staticmethod(store),
            "queries": queries,
            "blobs": blobs,
            "uow": uow,
            "clock": clock,
        },
    )


def _msg():
    from pacsflow.domain.messages import InboundMessage

    return InboundMessage(raw=b"MSH|...", peer="test", control_id=f.unique("C"))


def test_scheduled_study_is_matched_and_published(env):
    p = f.patient()
    o = env.place(p)
    result = env.store(f.arrived(f.received(p, accession=o.accession_number)))
    assert result.status is IngestStatus.STORED
    assert isinstance(result.outcome, Matched)
    [view] = env.queries.studies(StudyFilter())
    assert view.study.state is StudyState.PUBLISHED
    assert view.patient == p
    assert view.study.accession_number == o.accession_number
    assert env.queries.exceptions() == []


def test_unscheduled_study_is_held_and_invisible(env):
    p = f.patient()
    env.store(f.arrived(f.received(p)))
    assert env.queries.studies(StudyFilter()) == []
    [exc] = env.queries.exceptions()
    assert exc.reason is ExceptionReason.UNKNOWN_PATIENT
    held = env.queries.studies(StudyFilter(is_published_only=False))
    assert [v.study.state for v in held] == [StudyState.HELD]


def test_duplicate_instance_is_stored_once(env):
    p = f.patient()
    o = env.place(p)
    a = f.arrived(f.received(p, accession=o.accession_number))
    assert env.store(a).status is IngestStatus.STORED
    assert env.store(a).status is IngestStatus.DUPLICATE
    assert len(env.blobs.objects) == 1
    [view] = env.queries.studies(StudyFilter())
    assert view.study.instance_count == 1


def test_later_instances_join_their_study(env):
    p = f.patient()
    o = env.place(p)
    rec = f.received(p, accession=o.accession_number)
    first = f.arrived(rec)
    env.store(first)
    env.store(f.arrived(rec, series_instance_uid=first.instance.series_instance_uid))
    env.store(f.arrived(rec))
    [view] = env.queries.studies(StudyFilter())
    assert (view.study.series_count, view.study.instance_count) == (2, 3)


def test_instance_disagreeing_with_its_study_holds_the_study(env):
    p = f.patient()
    o = env.place(p)
    rec = f.received(p, accession=o.accession_number)
    env.store(f.arrived(rec))
    other = f.received(
        p, accession=o.accession_number, study_uid=rec.study_instance_uid, patient_id="OTHER"
    )
    result = env.store(f.arrived(other))
    assert result.state is StudyState.HELD
    assert env.queries.studies(StudyFilter()) == []
    [exc] = env.queries.exceptions()
    assert exc.reason is ExceptionReason.STUDY_INCONSISTENT


def test_missing_patient_id_is_stored_and_held_not_refused(env):
    # Patient ID is Type 2 in the image IODs: valid when empty, so held for a person.
    p = f.patient()
    o = env.place(p)
    result = env.store(f.arrived(f.received(p, accession=o.accession_number, patient_id="")))
    assert (result.status, result.state) == (IngestStatus.STORED, StudyState.HELD)
    assert len(env.blobs.objects) == 1
    assert env.queries.studies(StudyFilter()) == []
    [exc] = env.queries.exceptions()
    assert exc.reason is ExceptionReason.MISSING_PATIENT_ID


def test_missing_instance_uid_is_refused_and_nothing_is_stored(env):
    with pytest.raises(MissingIdentifier):
        env.store(f.arrived(f.received(None, patient_id=""), sop_instance_uid=Uid("")))
    assert env.blobs.objects == {}


def test_malformed_uid_is_refused(env):
    p = f.patient()
    with pytest.raises(InvalidInput):
        env.store(f.arrived(f.received(p), sop_instance_uid=Uid("1.2.abc")))


def test_match_outcomes_are_recorded_for_kpis(env):
    import sqlalchemy as sa

    from pacsflow.adapters.db.tables import match_events

    p = f.patient()
    o = env.place(p)
    env.store(f.arrived(f.received(p, accession=o.accession_number)))
    env.store(f.arrived(f.received(p)))
    with env.uow.engine.connect() as conn:
        kinds = sorted(r.kind for r in conn.execute(sa.select(match_events)))
    assert kinds == ["auto_matched", "held"]


def test_a_failed_index_leaves_no_orphan_object(env, monkeypatch):
    from pacsflow.adapters.db.studies import SqlStudyRepository
    from pacsflow.domain.errors import TransientError

    def broken(self, arrived, at):
        raise TransientError("database is locked")

    monkeypatch.setattr(SqlStudyRepository, "add_instance", broken)
    with pytest.raises(TransientError):
        env.store(f.arrived(f.received(f.patient())))
    assert env.blobs.objects == {}


def test_losing_a_race_with_a_twin_leaves_no_orphan_object(env, monkeypatch):
    a = f.arrived(f.received(f.patient()))
    real_put = env.blobs.put_file
    racing = [True]
    twins = []

    def put_while_a_twin_is_indexed(key, source):
        size = real_put(key, source)
        if racing:  # the same instance, on another association, is indexed meanwhile
            racing.clear()
            twins.append(env.store(a))
        return size

    monkeypatch.setattr(env.blobs, "put_file", put_while_a_twin_is_indexed)
    assert env.store(a).status is IngestStatus.DUPLICATE
    assert [twin.status for twin in twins] == [IngestStatus.STORED]
    assert len(env.blobs.objects) == 1


def test_a_duplicate_is_told_to_the_duplicate_hooks_after_its_transaction(tmp_path):
    uow = memory_uow()
    clock = FixedClock()
    seen: list[bool] = []

    def is_writable(arrived):  # a hook may write: no transaction of the ingest is open
        with uow() as u:
            uid = arrived.instance.study_instance_uid
            u.events.record_match(uid, MatchOutcomeKind.HELD, clock.now())
            u.commit()
        seen.append(True)

    ingest = Ingest(uow, InMemoryBlobStore(), clock, on_duplicate=[is_writable])
    a = f.arrived(f.received(f.patient()))
    src = tmp_path / "a.dcm"
    src.write_bytes(b"DICM")
    assert ingest.receive(a, src).status is IngestStatus.STORED
    assert seen == []
    assert ingest.receive(a, src).status is IngestStatus.DUPLICATE
    assert seen == [True]


def test_reports_waiting_for_a_stored_study_are_found_by_its_accession_or_its_uid(env):
    from pacsflow.domain.reports import Report, ReportStatus

    p = f.patient()
    with_accession = f.arrived(f.received(p, accession="ACC-W"))
    without = f.arrived(f.received(p, accession=""))
    env.store(with_accession)
    env.store(without)
    uid, bare_uid = with_accession.instance.study_instance_uid, without.instance.study_instance_uid
    with env.uow() as uow:
        now = env.clock.now()
        by_accession = uow.reports.add(Report("ACC-W", ReportStatus.FINAL, "a"), now, "t")
        by_uid = uow.reports.add(
            Report("", ReportStatus.FINAL, "u", study_instance_uid=uid), now, "t"
        )
        attached = uow.reports.add(Report("ACC-W", ReportStatus.FINAL, "x"), now, "t")
        uow.reports.attach(attached, uid)
        uow.reports.add(
            Report("", ReportStatus.FINAL, "other", study_instance_uid="1.2.3"), now, "t"
        )
        uow.commit()
        assert [r.id for r in uow.reports.unattached_for(uid)] == [by_accession, by_uid]
        # An empty accession number names no report.
        assert uow.reports.unattached_for(bare_uid) == []
