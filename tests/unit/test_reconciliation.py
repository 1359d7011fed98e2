"""Reconciliation actions: match, assign, reject, undo — each audited and undoable."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from pacsflow.adapters.db.audit import audit_records
from pacsflow.domain import commands as cmd
from pacsflow.domain.audit import ActiveParticipant, AuditSource
from pacsflow.domain.errors import ConflictingState, InvalidInput
from pacsflow.domain.studies import StudyFilter, StudyState
from pacsflow.workflow.reconciliation import Reconciliation
from tests import factories as f
from tests.fakes import FixedClock
from tests.unit.test_late_matching import World

ME = ActiveParticipant("rita", is_requestor=True)


@pytest.fixture
def w(tmp_path: Path) -> World:
    return World(tmp_path)


def _rec(w: World) -> Reconciliation:
    return Reconciliation(w.uow, FixedClock(), AuditSource("PACSFLOW"))


def _state(w: World) -> StudyState:
    [view] = w.queries.studies(StudyFilter(is_published_only=False))
    return view.study.state


def test_match_to_order_publishes_under_the_orders_patient(w: World) -> None:
    p = f.patient()
    o = f.order(p)
    w.apply(cmd.PlaceOrder(o, p))
    w.store(f.received(p, accession="TYPO-" + o.accession_number))
    [exc] = w.queries.exceptions()
    done = _rec(w).match_to_order(exc.id, o.accession_number, ME)
    assert done.state is StudyState.PUBLISHED
    [view] = w.queries.studies(StudyFilter())
    assert view.study.accession_number == o.accession_number
    assert view.patient == p
    assert w.queries.exceptions() == []


def test_undo_restores_the_previous_state_exactly(w: World) -> None:
    p = f.patient()
    o = f.order(p)
    w.apply(cmd.PlaceOrder(o, p))
    w.store(f.received(p, accession="TYPO"))
    [before] = w.queries.studies(StudyFilter(is_published_only=False))
    [exc] = w.queries.exceptions()
    done = _rec(w).match_to_order(exc.id, o.accession_number, ME)
    assert _rec(w).undo(done.action_id, ME) is StudyState.HELD
    [after] = w.queries.studies(StudyFilter(is_published_only=False))
    assert after == before
    [reopened] = w.queries.exceptions()
    assert (reopened.id, reopened.reason) == (exc.id, exc.reason)
    with pytest.raises(ConflictingState):
        _rec(w).undo(done.action_id, ME)


def test_assign_an_unscheduled_study_to_its_patient(w: World) -> None:
    p = f.patient()
    w.apply(cmd.RegisterPatient(p))
    w.store(f.received(p))
    [exc] = w.queries.exceptions()
    _rec(w).assign_to_patient(exc.id, p.primary, ME)
    assert _state(w) is StudyState.PUBLISHED


def test_reject_hides_the_study_and_needs_a_reason(w: World) -> None:
    p = f.patient()
    w.store(f.received(p))
    [exc] = w.queries.exceptions()
    with pytest.raises(InvalidInput):
        _rec(w).reject(exc.id, " ", ME)
    _rec(w).reject(exc.id, "test image", ME)
    assert _state(w) is StudyState.REJECTED
    assert w.queries.studies(StudyFilter()) == []


def test_actions_on_unknown_or_resolved_exceptions_are_refused(w: World) -> None:
    p = f.patient()
    w.store(f.received(p))
    [exc] = w.queries.exceptions()
    with pytest.raises(InvalidInput):
        _rec(w).match_to_order(exc.id, "NO-SUCH", ME)
    with pytest.raises(InvalidInput):
        _rec(w).reject(exc.id + 100, "x", ME)
    _rec(w).reject(exc.id, "dup", ME)
    with pytest.raises(ConflictingState):
        _rec(w).reject(exc.id, "again", ME)


def test_every_action_is_audited(w: World) -> None:
    p = f.patient()
    w.store(f.received(p))
    [exc] = w.queries.exceptions()
    done = _rec(w).reject(exc.id, "wrong patient", ME)
    _rec(w).undo(done.action_id, ME)
    with w.uow.engine.connect() as conn:
        users = conn.execute(
            sa.select(audit_records.c.user_id).where(audit_records.c.event_id == "110103")
        ).all()
    assert [u[0] for u in users] == ["rita", "rita"]
