"""Running the queue: owners, targets and overdue order, candidates from the index, the report."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from pacsflow.adapters.db.audit import audit_records
from pacsflow.domain import commands as cmd
from pacsflow.domain.access import Role
from pacsflow.domain.accounts import UserRecord
from pacsflow.domain.audit import ActiveParticipant, AuditSource
from pacsflow.domain.candidates import CandidateKind
from pacsflow.domain.errors import ConflictingState, InvalidInput
from pacsflow.domain.exception_queue import (
    ASSIGN_OWNER,
    DEFAULT_TARGETS,
    LATE_MATCH,
    REPORT_COLUMNS,
    ActionFact,
    ExceptionHistory,
    daily_report,
    percentile,
    resolution_as_of,
    targets,
)
from pacsflow.domain.matching import ExceptionReason, MismatchSource
from pacsflow.domain.orders import AccessionNumber
from pacsflow.domain.studies import StudyFilter, StudyState
from pacsflow.workflow.exception_queue import ExceptionQueue
from pacsflow.workflow.ingest import Ingest
from pacsflow.workflow.intake import Intake
from pacsflow.workflow.queries import Queries
from pacsflow.workflow.reconciliation import Reconciliation
from tests import factories as f
from tests.fakes import FixedClock, InMemoryBlobStore, memory_uow
from tests.receiving import receive

R, S = ExceptionReason, MismatchSource
DAY = date(2026, 11, 28)
T0 = datetime(2026, 11, 28, tzinfo=UTC)
ME = ActiveParticipant("rita", is_requestor=True)


def _h(i: int, reason: ExceptionReason, opened: float, **kw: object) -> ExceptionHistory:
    """An exception history; times are hours from midnight of DAY."""
    return ExceptionHistory(
        id=i,
        reason=reason,
        source=S.MODALITY_ENTRY,
        opened_at=T0 + timedelta(hours=opened),
        **kw,  # type: ignore[arg-type]
    )


def _at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


# Domain: targets, order, report arithmetic -----------------------------------------------


def test_every_reason_has_a_target_and_configured_ones_win() -> None:
    assert set(DEFAULT_TARGETS) == set(ExceptionReason)
    assert DEFAULT_TARGETS[R.PATIENT_ORDER_MISMATCH] == timedelta(hours=1)
    assert DEFAULT_TARGETS[R.NO_ORDER] == timedelta(hours=4)
    mine = targets({R.NO_ORDER: timedelta(minutes=30)})
    assert mine[R.NO_ORDER] == timedelta(minutes=30)
    assert mine[R.UNKNOWN_PATIENT] == DEFAULT_TARGETS[R.UNKNOWN_PATIENT]


def test_the_daily_report_counts_the_day_as_it_ended() -> None:
    histories = [
        # opened and matched within the day
        _h(1, R.NO_ORDER, 8, resolved_at=_at(9), resolution="match_to_order",
           actions=(ActionFact("match_to_order", _at(9)),)),
        # opened the day before, still open: open and overdue at the end
        _h(2, R.PATIENT_ORDER_MISMATCH, -17),
        # resolved by a late order
        _h(3, R.UNKNOWN_ACCESSION, 10, resolved_at=_at(12), resolution=LATE_MATCH),
        # rejected, undone, still open (and past its one-hour target)
        _h(4, R.DEMOGRAPHICS_DIFFER, 11,
           actions=(ActionFact("reject", _at(11.5), _at(11.75)),)),
        # opened late, not yet past four hours
        _h(5, R.NO_ORDER, 23),
        # opened the day before, assigned today
        _h(6, R.NO_ORDER, -14, resolved_at=_at(1), resolution="assign_to_patient",
           actions=(ActionFact("assign_to_patient", _at(1)),)),
        # matched today, undone only tomorrow: resolved as the day ended; an owner changes nothing
        _h(9, R.UNKNOWN_PATIENT, 9.5,
           actions=(ActionFact(ASSIGN_OWNER, _at(9.6)),
                    ActionFact("match_to_order", _at(10), _at(30)))),
        # resolved before the day, and opened after it: not in the day
        _h(7, R.NO_ORDER, -30, resolved_at=_at(-20), resolution="reject"),
        _h(8, R.NO_ORDER, 25),
    ]  # fmt: skip
    report = daily_report(DAY, T0, _at(24), histories, DEFAULT_TARGETS)
    t = report.total
    assert (t.reason, t.source) == ("all", "all")
    assert (t.opened, t.resolved, t.open_at_end, t.overdue_at_end) == (5, 4, 3, 2)
    assert (t.matched, t.assigned, t.rejected, t.undone, t.late_matched) == (2, 1, 1, 1, 1)
    assert t.other_actions == 0
    # waits: 0.5 h, 1 h, 2 h, 15 h
    assert t.median_seconds == 5400.0
    assert t.p90_seconds == 15 * 3600.0
    by_reason = {r.reason: r for r in report.rows}
    assert set(by_reason) == {
        "no_order",
        "patient_order_mismatch",
        "unknown_accession",
        "demographics_differ",
        "unknown_patient",
    }
    no_order = by_reason["no_order"]
    assert (no_order.opened, no_order.resolved, no_order.open_at_end) == (2, 2, 1)
    assert no_order.overdue_at_end == 0
    assert no_order.median_seconds == (3600 + 15 * 3600) / 2


def test_the_report_of_a_day_in_progress_stops_at_now() -> None:
    waiting = [_h(1, R.NO_ORDER, 8)]
    assert daily_report(DAY, T0, _at(11), waiting, DEFAULT_TARGETS).total.overdue_at_end == 0
    assert daily_report(DAY, T0, _at(13), waiting, DEFAULT_TARGETS).total.overdue_at_end == 1


def test_the_report_as_csv_and_json() -> None:
    histories = [_h(1, R.NO_ORDER, 8), _h(2, R.UNKNOWN_PATIENT, 9, resolved_at=_at(9.5))]
    report = daily_report(DAY, T0, _at(24), histories, DEFAULT_TARGETS)
    rows = list(csv.DictReader(io.StringIO(report.as_csv())))
    assert tuple(rows[0]) == REPORT_COLUMNS
    assert [(r["reason"], r["source"]) for r in rows] == [
        ("no_order", "modality_entry"),
        ("unknown_patient", "modality_entry"),
        ("all", "all"),
    ]
    assert rows[0]["median_seconds"] == ""  # nothing resolved: no time to resolution
    assert rows[1]["median_seconds"] == "1800.0"
    as_dict = report.as_dict()
    assert as_dict["day"] == "2026-11-28"
    assert as_dict["total"]["opened"] == 2


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1), st.floats(0, 1))
def test_a_percentile_is_one_of_the_values_and_grows_with_the_fraction(values, q) -> None:
    p = percentile(values, q)
    assert p in values
    assert percentile(values, min(1.0, q + 0.1)) >= p  # type: ignore[operator]
    assert percentile([], q) is None


_OPS = ["match_to_order", "assign_to_patient", "reject", "undo", LATE_MATCH, ASSIGN_OWNER]


@given(st.lists(st.tuples(st.sampled_from(_OPS), st.integers(1, 600)), max_size=15))
def test_the_state_at_any_moment_is_reconstructed_from_the_history(steps) -> None:
    # Play the steps as the system would allow them, remembering the state after each.
    resolved_at: datetime | None = None
    resolution = ""
    actions: list[ActionFact] = []
    last: int | None = None  # the action that resolves the exception now, if any
    moment = T0
    seen: list[tuple[datetime, tuple[datetime, str] | None]] = [(T0, None)]
    for op, gap in steps:
        moment += timedelta(seconds=gap)
        if op == ASSIGN_OWNER:
            actions.append(ActionFact(op, moment))
        elif op == "undo":
            if last is not None:
                actions[last] = replace(actions[last], undone_at=moment)
                resolved_at, resolution, last = None, "", None
        elif resolved_at is None:
            if op != LATE_MATCH:
                actions.append(ActionFact(op, moment))
                last = len(actions) - 1
            resolved_at, resolution = moment, op
        seen.append((moment, (resolved_at, resolution) if resolved_at else None))
    history = _h(1, R.NO_ORDER, 0, resolved_at=resolved_at, resolution=resolution,
                 actions=tuple(actions))  # fmt: skip
    for when, state in seen:
        assert resolution_as_of(history, when + timedelta(microseconds=1)) == state


# Workflow over the index ------------------------------------------------------------------


class Desk:
    """A reconciliation desk over an in-memory index, with a clock the test moves."""

    def __init__(self, tmp: Path) -> None:
        self.uow = memory_uow()
        self.clock = FixedClock()
        blobs = InMemoryBlobStore()
        self.intake = Intake(self.uow, self.clock)
        self.ingest = Ingest(self.uow, blobs, self.clock)
        self.queries = Queries(self.uow, blobs)
        self.rec = Reconciliation(self.uow, self.clock, AuditSource("PACSFLOW"))
        self.queue = ExceptionQueue(self.uow, self.clock)
        self.tmp = tmp
        with self.uow() as uow:
            for name in ("rita", "sam"):
                uow.accounts.add_user(UserRecord(name, frozenset({Role.RECONCILER})), T0)
            uow.accounts.add_user(
                UserRecord("gone", frozenset({Role.RECONCILER}), is_disabled=True), T0
            )
            uow.commit()

    def apply(self, *commands: cmd.Command) -> None:
        receive(self.intake, *commands)

    def store(self, received, **instance: object) -> int:
        arrived = f.arrived(received, **instance)
        src = self.tmp / f"{arrived.instance.sop_instance_uid}.dcm"
        src.write_bytes(b"x")
        self.ingest.receive(arrived, src)
        held = [e for e in self.queries.exceptions() if e.received == received]
        return held[0].id if held else 0


@pytest.fixture
def desk(tmp_path: Path) -> Desk:
    return Desk(tmp_path)


def test_an_owner_is_assigned_audited_and_undone(desk: Desk) -> None:
    exc_id = desk.store(f.received(f.patient()))
    first = desk.rec.assign_owner(exc_id, " rita ", ME)
    assert first.state is StudyState.HELD
    [item] = desk.queue.open()
    assert item.exception.owner == "rita"
    second = desk.rec.assign_owner(exc_id, "sam", ME)
    with pytest.raises(ConflictingState):
        desk.rec.undo(first.action_id, ME)  # sam owns it now: undo the later action first
    assert desk.rec.undo(second.action_id, ME) is StudyState.HELD
    assert desk.queue.open()[0].exception.owner == "rita"
    assert desk.rec.undo(first.action_id, ME) is StudyState.HELD
    assert desk.queue.open()[0].exception.owner == ""
    for bad in ("", "nobody", "gone"):
        with pytest.raises(InvalidInput):
            desk.rec.assign_owner(exc_id, bad, ME)
    with desk.uow.engine.connect() as conn:
        described = conn.execute(
            sa.select(audit_records.c.user_id).where(audit_records.c.event_id == "110103")
        ).all()
    assert len(described) == 4


def test_an_owner_stays_through_a_resolution_and_its_undo(desk: Desk) -> None:
    exc_id = desk.store(f.received(f.patient()))
    desk.rec.assign_owner(exc_id, "rita", ME)
    done = desk.rec.reject(exc_id, "test image", ME)
    with pytest.raises(ConflictingState):
        desk.rec.assign_owner(exc_id, "sam", ME)  # resolved: nothing left to work
    desk.rec.undo(done.action_id, ME)
    [item] = desk.queue.open()
    assert item.exception.owner == "rita"


def test_the_queue_puts_overdue_first_then_oldest(desk: Desk) -> None:
    walk_in = desk.store(f.received(f.patient()))  # unknown_patient: 4 h
    desk.clock.advance(60)
    p = f.patient()
    o = f.order(p)
    desk.apply(cmd.PlaceOrder(o, p))
    wrong = desk.store(f.received(f.patient(), accession=o.accession_number))  # 1 h
    desk.clock.advance(30 * 60)
    assert [i.exception.id for i in desk.queue.open()] == [walk_in, wrong]
    assert not any(i.is_overdue for i in desk.queue.open())
    desk.clock.advance(31 * 60)
    items = desk.queue.open()
    assert [(i.exception.id, i.is_overdue) for i in items] == [(wrong, True), (walk_in, False)]
    assert items[0].exception.reason is ExceptionReason.PATIENT_ORDER_MISMATCH
    assert items[0].target == timedelta(hours=1)
    assert items[0].due_at == items[0].exception.opened_at + timedelta(hours=1)
    assert items[1].age == timedelta(minutes=62)
    assert [i.exception.id for i in desk.queue.open(limit=1)] == [wrong]


def test_configured_targets_change_what_is_overdue(desk: Desk) -> None:
    desk.store(f.received(f.patient()))
    desk.clock.advance(20 * 60)
    strict = ExceptionQueue(desk.uow, desk.clock, {R.UNKNOWN_PATIENT: timedelta(minutes=15)})
    assert [i.is_overdue for i in strict.open()] == [True]
    assert [i.is_overdue for i in desk.queue.open()] == [False]


def test_candidates_come_from_the_index_best_first(desk: Desk) -> None:
    p = f.patient("4711002", family="NOVAK", given="PETR")
    o = f.order(p, accession_number=AccessionNumber("RAD20261128"))
    other = f.patient(family="SVOBODA", given="JAN")
    desk.apply(cmd.PlaceOrder(o, p), cmd.PlaceOrder(f.order(other), other))
    desk.apply(cmd.RegisterPatient(f.patient("4711020", family="NOVAK", given="PAVEL")))
    # Typed at the modality: two digits of the accession and of the patient ID swapped,
    # family and given name swapped.
    got = f.received(p, accession="RAD20261182", patient_id="4711020", family="PETR", given="NOVAK")
    exc_id = desk.store(got)
    ranked = desk.queue.candidates(exc_id)
    best = ranked[0]
    assert best.kind is CandidateKind.ORDER
    assert best.order is not None
    assert best.order.accession_number == o.accession_number
    codes = {e.code for e in best.evidence}
    assert {"near_accession", "near_patient_id", "swapped_name", "same_birth_date"} <= codes
    assert {"scheduled_same_day", "same_modality"} <= codes
    kinds = [(c.kind, c.patient.primary.value if c.patient else None) for c in ranked]
    assert (CandidateKind.PATIENT, "4711002") in kinds
    assert (CandidateKind.PATIENT, "4711020") in kinds  # same ID as typed, other person
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)
    with pytest.raises(InvalidInput):
        desk.queue.candidates(exc_id + 1000)


def test_an_exceptions_own_candidate_order_is_suggested(desk: Desk) -> None:
    p = f.patient()
    o = f.order(p)
    desk.apply(cmd.PlaceOrder(o, p))
    exc_id = desk.store(f.received(p, accession=o.accession_number, given="JANET"))
    [best, *_] = desk.queue.candidates(exc_id)
    assert best.order is not None
    assert best.order.accession_number == o.accession_number
    assert "same_accession" in {e.code for e in best.evidence}


def test_the_report_from_the_index(desk: Desk) -> None:
    desk.clock.current = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    p = f.patient()
    desk.apply(cmd.RegisterPatient(p))
    walk_in = desk.store(f.received(p))
    late = f.order(p)
    desk.store(f.received(p, accession=late.accession_number))  # resolved by a late order
    junk = desk.store(f.received(f.patient()))
    desk.clock.advance(1800)
    desk.rec.assign_to_patient(walk_in, p.primary, ME)
    done = desk.rec.reject(junk, "test", ME)
    with pytest.raises(ConflictingState):
        desk.rec.assign_owner(junk, "rita", ME)  # resolved: nothing left to work
    desk.clock.advance(600)
    desk.rec.undo(done.action_id, ME)
    desk.clock.advance(3600)
    desk.apply(cmd.PlaceOrder(late, p))
    desk.clock.current = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
    report = desk.queue.report(DAY)
    t = report.total
    assert (t.opened, t.resolved, t.open_at_end, t.overdue_at_end) == (3, 2, 1, 1)
    assert (t.assigned, t.rejected, t.undone, t.late_matched, t.matched) == (1, 1, 1, 1, 0)
    assert t.median_seconds == (1800 + 6000) / 2
    assert report.end == datetime(2026, 11, 29, tzinfo=UTC)
    # The next day: nothing opened or resolved; the rejected-then-undone study is still open.
    today = desk.queue.report()
    assert today.day == date(2026, 11, 29)
    assert today.end == desk.clock.now()
    assert (today.total.opened, today.total.resolved, today.total.open_at_end) == (0, 0, 1)
    # In Honolulu (UTC-10) the 28th ends at 10:00 UTC on the 29th.
    far = desk.queue.report(DAY, ZoneInfo("Pacific/Honolulu"))
    assert far.start == datetime(2026, 11, 28, 10, tzinfo=UTC)
    with pytest.raises(InvalidInput):
        desk.queue.report(date(2026, 11, 30))
    assert desk.queries.studies(StudyFilter()) != []
