"""Reconciliation: people work the exceptions queue; every action is audited and undoable.

Corrections and splits change the index only: the stored objects stay as received, and the
identity (Study Instance UID included) is coerced from the index when they leave. This module
holds the actions that resolve an exception as it is (match, assign, reject, owner) and undo;
`reconciliation_corrections.py` and `reconciliation_splits.py` the actions that change a
study's identifiers or series, each with its undo.
"""

from __future__ import annotations

from dataclasses import replace

from pacsflow.domain.audit import ActiveParticipant, AuditSource
from pacsflow.domain.errors import ConflictingState, InvalidInput
from pacsflow.domain.exception_queue import (
    ASSIGN_OWNER,
    CORRECT,
    CORRECT_HELD,
    SPLIT,
    ExceptionRecord,
)
from pacsflow.domain.matching import MatchOutcomeKind
from pacsflow.domain.orders import AccessionNumber, OrderStatus
from pacsflow.domain.patients import PatientIdentifier
from pacsflow.domain.reconciliation import ReconciliationAction
from pacsflow.domain.studies import StudyState
from pacsflow.domain.uids import Uid
from pacsflow.workflow.events import EventBus
from pacsflow.workflow.ports.clock import Clock
from pacsflow.workflow.ports.uow import UnitOfWork, UnitOfWorkFactory
from pacsflow.workflow.reconciliation_context import (
    UNDONE,
    ActionContext,
    Done,
    action_on,
    indexed,
    open_exception,
)
from pacsflow.workflow.reconciliation_corrections import Correction, check, correct, undo_correct
from pacsflow.workflow.reconciliation_splits import SplitDone, split, undo_split


class Reconciliation:
    """Match, assign, correct, split, reject, assign an owner, undo: the actions on studies."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        source: AuditSource,
        events: EventBus | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._ctx = ActionContext(clock, source, events or EventBus())

    def match_to_order(self, exception_id: int, accession: str, actor: ActiveParticipant) -> Done:
        """The study belongs to this order: it takes the order's patient and is published."""
        with self._uow() as uow:
            exc = open_exception(uow, exception_id)
            order = uow.orders.by_accession(AccessionNumber(accession))
            if order is None:
                raise InvalidInput(
                    f"no order has accession number {accession!r}", location="accession"
                )
            if order.status is OrderStatus.CANCELLED:
                raise ConflictingState(f"order {accession} was cancelled")
            done = self._apply(
                uow, exc, actor, "match_to_order", accession,
                StudyState.PUBLISHED, order.patient, order.accession_number,
            )  # fmt: skip
            uow.commit()
            return done

    def assign_to_patient(
        self, exception_id: int, patient: PatientIdentifier, actor: ActiveParticipant
    ) -> Done:
        """The (unscheduled) study belongs to this registered patient: it is published."""
        with self._uow() as uow:
            exc = open_exception(uow, exception_id)
            found = uow.patients.find(patient)
            if found is None:
                raise InvalidInput(
                    f"no registered patient {patient.value!r}", location="patient_id"
                )
            study = uow.studies.get(exc.study_instance_uid)
            accession = study.accession_number if study else ""
            done = self._apply(
                uow, exc, actor, "assign_to_patient", patient.value,
                StudyState.PUBLISHED, found.primary, accession,
            )  # fmt: skip
            uow.commit()
            return done

    def reject(self, exception_id: int, reason: str, actor: ActiveParticipant) -> Done:
        """Hide the study from clinical use for good (kept, with the reason)."""
        if not reason.strip():
            raise InvalidInput("say why the study is rejected", location="reason")
        with self._uow() as uow:
            exc = open_exception(uow, exception_id)
            study = uow.studies.get(exc.study_instance_uid)
            done = self._apply(
                uow, exc, actor, "reject", reason.strip(),
                StudyState.REJECTED,
                study.patient if study else None,
                study.accession_number if study else "",
            )  # fmt: skip
            uow.commit()
            return done

    def assign_owner(self, exception_id: int, owner: str, actor: ActiveParticipant) -> Done:
        """Name the user who works the exception; audited, and undone like any action."""
        owner = owner.strip()
        if not owner:
            raise InvalidInput("name the user who works the exception", location="owner")
        with self._uow() as uow:
            exc = open_exception(uow, exception_id)
            user = uow.accounts.user(owner)
            if user is None or user.is_disabled:
                raise InvalidInput(f"no active user {owner!r}", location="owner")
            uid = exc.study_instance_uid
            study = uow.studies.get(uid)
            if study is None:
                raise ConflictingState(f"study {uid} of exception {exc.id} is not indexed")
            now = self._clock.now()
            action_id = uow.reconciliations.add(
                replace(
                    action_on(study, exc.id, ASSIGN_OWNER, actor, now, owner),
                    before_owner=exc.owner,
                )
            )
            uow.exceptions.set_owner(exc.id, owner)
            self._ctx.audit(uow, actor, [uid], f"{ASSIGN_OWNER} {owner}", now)
            uow.commit()
            return Done(action_id, study.state)

    def correct(self, exception_id: int, correction: Correction, actor: ActiveParticipant) -> Done:
        """Set a held study's patient ID, issuer or accession number and match it again.

        Published when it matches now (the exception is resolved), else held for the reason
        matching gives now (the exception stays open, its reason and identifiers updated).
        """
        check(correction)
        with self._uow() as uow:
            exc = open_exception(uow, exception_id)
            study = indexed(uow, exc.study_instance_uid)
            done = correct(self._ctx, uow, study, exc, correction, actor)
            uow.commit()
            return done

    def correct_study(
        self, study_uid: str, correction: Correction, actor: ActiveParticipant
    ) -> Done:
        """Correct a study's identifiers, held or published (see correct).

        A published study that no longer matches is held, with a new exception.
        """
        check(correction)
        with self._uow() as uow:
            study = indexed(uow, Uid(study_uid.strip()))
            exc = uow.exceptions.open_for(study.study_instance_uid)
            done = correct(self._ctx, uow, study, exc, correction, actor)
            uow.commit()
            return done

    def split(
        self,
        study_uid: str,
        series_uid: str,
        actor: ActiveParticipant,
        *,
        target_study_uid: str | None = None,
        correction: Correction | None = None,
    ) -> SplitDone:
        """Move one series out of a study, to a new study or to an existing one.

        A new study (its UID generated here) takes the source's identity with the correction
        applied, and is matched like a study that just arrived: published under the order it
        matches, else held with its own exception; without a correction it follows a published
        source as it is. An existing target keeps its identity (correct it on its own).
        """
        correction = correction or Correction()
        check(correction)
        series = Uid(series_uid.strip())
        with self._uow() as uow:
            done = split(self._ctx, uow, study_uid, series, actor, target_study_uid, correction)
            uow.commit()
            return done

    def undo(self, action_id: int, actor: ActiveParticipant) -> StudyState:
        """Restore the study and its exception exactly as they were before the action.

        Refused while a later action on the same study (or on a study a split created) stands:
        undo that first.
        """
        with self._uow() as uow:
            action = uow.reconciliations.get(action_id)
            if action is None:
                raise InvalidInput(f"no reconciliation action {action_id}", location="action")
            if action.undone_at is not None:
                raise ConflictingState(f"action {action_id} was already undone")
            if action.action == ASSIGN_OWNER:
                state = self._undo_owner(uow, action, actor)
            else:
                _refuse_if_later(uow, action)
                if action.action == SPLIT:
                    state = undo_split(self._ctx, uow, action, actor)
                elif action.action in (CORRECT, CORRECT_HELD):
                    state = undo_correct(self._ctx, uow, action, actor)
                else:
                    state = self._undo_resolution(uow, action, actor)
            uow.commit()
            return state

    def _undo_resolution(
        self, uow: UnitOfWork, action: ReconciliationAction, actor: ActiveParticipant
    ) -> StudyState:
        """Undo a match, an assignment or a rejection: the exception opens again."""
        exc = uow.exceptions.get(action.exception_id) if action.exception_id else None
        if exc is None or exc.resolved_at is None:
            raise ConflictingState("the exception was reopened since; undo the later action")
        now = self._clock.now()
        uow.studies.set_match(
            action.study_instance_uid,
            action.before_state,
            action.before_patient,
            action.before_accession,
        )
        uow.exceptions.reopen(exc.id)
        uow.reconciliations.mark_undone(action.id, now)
        self._ctx.audit(uow, actor, [action.study_instance_uid], f"undo {action.action}", now)
        return action.before_state

    def _undo_owner(
        self, uow: UnitOfWork, action: ReconciliationAction, actor: ActiveParticipant
    ) -> StudyState:
        exc = uow.exceptions.get(action.exception_id) if action.exception_id else None
        if exc is None or exc.owner != action.detail:
            raise ConflictingState("the owner changed since; undo the later action")
        now = self._clock.now()
        uow.exceptions.set_owner(exc.id, action.before_owner)
        uow.reconciliations.mark_undone(action.id, now)
        uid = action.study_instance_uid
        self._ctx.audit(uow, actor, [uid], f"undo {ASSIGN_OWNER}", now)
        study = uow.studies.get(uid)
        return study.state if study is not None else action.before_state

    def _apply(
        self,
        uow: UnitOfWork,
        exc: ExceptionRecord,
        actor: ActiveParticipant,
        action: str,
        detail: str,
        state: StudyState,
        patient: PatientIdentifier | None,
        accession: str,
    ) -> Done:
        now = self._clock.now()
        uid = exc.study_instance_uid
        study = uow.studies.get(uid)
        if study is None:
            raise ConflictingState(f"study {uid} of exception {exc.id} is not indexed")
        action_id = uow.reconciliations.add(action_on(study, exc.id, action, actor, now, detail))
        uow.studies.set_match(uid, state, patient, accession)
        uow.exceptions.resolve(exc.id, now, action)
        if state is StudyState.PUBLISHED:
            uow.events.record_match(uid, MatchOutcomeKind.RECONCILED, now)
            self._ctx.published(uow, uid, now)
        self._ctx.audit(uow, actor, [uid], action, now)
        return Done(action_id, state)


def _refuse_if_later(uow: UnitOfWork, action: ReconciliationAction) -> None:
    """Undo goes backwards: a later action on the same studies must be undone first."""
    studies = [action.study_instance_uid]
    if action.target_study_uid is not None:
        studies.append(action.target_study_uid)
    for later in uow.reconciliations.later(action.id, studies):
        if later.action != ASSIGN_OWNER:  # an owner change leaves identities alone
            raise ConflictingState(f"action {later.id} ({later.action}) came later: undo it first")


__all__ = ["UNDONE", "Correction", "Done", "Reconciliation", "SplitDone"]
