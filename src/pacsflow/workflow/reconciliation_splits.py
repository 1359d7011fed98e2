"""Splitting a series out of a study (to a new study or an existing one), and undoing it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from pacsflow.domain.audit import ActiveParticipant
from pacsflow.domain.errors import ConflictingState, InvalidInput
from pacsflow.domain.exception_queue import SPLIT, ExceptionRecord
from pacsflow.domain.matching import Matched, MatchOutcomeKind
from pacsflow.domain.reconciliation import ReconciliationAction
from pacsflow.domain.studies import StudyRecord, StudyState
from pacsflow.domain.uids import Uid, new_uid
from pacsflow.workflow.ingest import decide
from pacsflow.workflow.ports.uow import UnitOfWork
from pacsflow.workflow.reconciliation_context import UNDONE, ActionContext, action_on, indexed
from pacsflow.workflow.reconciliation_corrections import (
    Correction,
    corrected_identity,
    held_under,
    hold_for,
    identity_of,
)


@dataclass(frozen=True, slots=True)
class SplitDone:
    """The result of a split: its id (to undo it), the source's state, where the series went."""

    action_id: int
    state: StudyState
    target_study_uid: Uid
    target_state: StudyState


def split(
    ctx: ActionContext,
    uow: UnitOfWork,
    study_uid: str,
    series: Uid,
    actor: ActiveParticipant,
    target_study_uid: str | None,
    correction: Correction,
) -> SplitDone:
    """Move one series out of a study (see Reconciliation.split); the caller commits."""
    source = indexed(uow, Uid(study_uid.strip()))
    uid = source.study_instance_uid
    if uow.studies.series_study(series) != uid:
        raise InvalidInput(f"study {uid} has no series {series}", location="series_instance_uid")
    shown = {
        i.series_instance_uid
        for i in uow.studies.instances(study_uids=[uid], is_published_only=False)
    }
    if series not in shown:
        raise InvalidInput(
            f"series {series} has no visible instance", location="series_instance_uid"
        )
    if shown == {series}:
        raise ConflictingState(
            f"series {series} is all study {uid} shows: correct the study instead"
        )
    exc = uow.exceptions.open_for(uid)
    now = ctx.clock.now()
    opened: int | None = None
    if target_study_uid is not None and target_study_uid.strip():
        target = indexed(uow, Uid(target_study_uid.strip()), location="target_study_uid")
        if target.study_instance_uid == uid:
            raise InvalidInput("the target is the study itself", location="target_study_uid")
        if not correction.is_empty:
            raise InvalidInput(
                "an existing study keeps its identity: correct it on its own",
                location="target_study_uid",
            )
        to, is_new, state = target.study_instance_uid, False, target.state
        uow.studies.move_series(series, to)
    else:
        to, is_new = new_uid(), True
        uow.studies.copy_study(uid, to, now)
        uow.studies.move_series(series, to)
        state, opened = _file_new_study(uow, source, exc, to, correction, now)
    if state is StudyState.PUBLISHED:
        ctx.published(uow, to, now)
    detail = " ".join(p for p in (f"series {series} to study {to}", correction.describe()) if p)
    action_id = uow.reconciliations.add(
        replace(
            action_on(source, exc.id if exc else None, SPLIT, actor, now, detail),
            opened_exception_id=opened,
            series_instance_uid=series,
            target_study_uid=to,
            is_new_target=is_new,
        )
    )
    ctx.audit(uow, actor, [uid, to], f"{SPLIT} series {series}", now)
    return SplitDone(action_id, source.state, to, state)


def undo_split(
    ctx: ActionContext, uow: UnitOfWork, action: ReconciliationAction, actor: ActiveParticipant
) -> StudyState:
    """Move the series back; the study a split created goes again unless someone worked on it."""
    source, target = action.study_instance_uid, action.target_study_uid
    series = action.series_instance_uid
    assert target is not None, "a split names the study it moved the series to"
    assert series is not None, "a split names the series it moved"
    if uow.studies.series_study(series) != target:
        raise ConflictingState(f"series {series} is no longer in study {target}")
    # A new study nobody worked on goes again; one that was (its exception has actions on
    # record, a report is attached) stays, empty: no query, worklist or retrieval shows it.
    is_worked = action.is_new_target and (
        (
            action.opened_exception_id is not None
            and uow.reconciliations.has_actions(action.opened_exception_id)
        )
        or bool(uow.reports.for_study(target))
    )
    now = ctx.clock.now()
    uow.studies.move_series(series, source)
    if is_worked:
        left = uow.exceptions.open_for(target)
        if left is not None:
            uow.exceptions.resolve(left.id, now, UNDONE)
    elif action.is_new_target:
        uow.studies.remove_study(target)
    uow.reconciliations.mark_undone(action.id, now)
    ctx.audit(uow, actor, [source, target], f"undo {SPLIT}", now)
    study = uow.studies.get(source)
    return study.state if study is not None else action.before_state


def _file_new_study(
    uow: UnitOfWork,
    source: StudyRecord,
    exc: ExceptionRecord | None,
    uid: Uid,
    correction: Correction,
    now: datetime,
) -> tuple[StudyState, int | None]:
    """Match a study a split just created; its state and the exception opened for it."""
    if correction.is_empty and source.state is StudyState.PUBLISHED:
        # The same exam in two studies: it belongs where its source does.
        state = StudyState.PUBLISHED
        uow.studies.set_match(uid, state, source.patient, source.accession_number)
        uow.events.record_match(uid, MatchOutcomeKind.RECONCILED, now)
        return state, None
    current = exc.received if exc is not None else identity_of(uow, source)
    identity = replace(corrected_identity(source, exc, current, correction), study_instance_uid=uid)
    outcome = decide(uow, identity)
    if isinstance(outcome, Matched):
        state = StudyState.PUBLISHED
        uow.studies.set_match(uid, state, outcome.patient.primary, outcome.order.accession_number)
        uow.events.record_match(uid, MatchOutcomeKind.RECONCILED, now)
        return state, None
    hold = hold_for(outcome, identity)
    uow.studies.set_match(uid, StudyState.HELD, *held_under(outcome, identity))
    opened = uow.exceptions.add(
        uid, hold.reason, hold.source, hold.detail, identity, hold.candidate_order, now
    )
    uow.events.record_match(uid, MatchOutcomeKind.HELD, now, hold.reason, hold.source)
    return StudyState.HELD, opened


__all__ = ["SplitDone", "split", "undo_split"]
