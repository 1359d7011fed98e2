"""Reconciliation: people work the exceptions queue; every action is audited and undoable."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pacsflow.domain.audit import (
    Action,
    ActiveParticipant,
    AuditEvent,
    AuditSource,
    instances_accessed,
)
from pacsflow.domain.audit import study_object as audit_study
from pacsflow.domain.errors import ConflictingState, InvalidInput
from pacsflow.domain.exception_queue import ASSIGN_OWNER
from pacsflow.domain.orders import AccessionNumber, OrderStatus
from pacsflow.domain.patients import PatientIdentifier
from pacsflow.domain.uids import Uid
from pacsflow.workflow.ports import (
    Clock,
    ExceptionRecord,
    MatchOutcomeKind,
    ReconciliationAction,
    StudyState,
    UnitOfWork,
    UnitOfWorkFactory,
)


@dataclass(frozen=True, slots=True)
class Done:
    """The result of a reconciliation action: its id (to undo it) and the study's new state."""

    action_id: int
    state: StudyState


#: Called inside the transaction that publishes a held study (waiting reports attach).
OnPublished = Callable[[UnitOfWork, Uid, datetime], None]


class Reconciliation:
    """Match, assign, reject, assign an owner, undo: the actions on held studies."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        source: AuditSource,
        on_published: Sequence[OnPublished] = (),
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._source = source
        self._on_published = tuple(on_published)

    def match_to_order(self, exception_id: int, accession: str, actor: ActiveParticipant) -> Done:
        """The study belongs to this order: it takes the order's patient and is published."""
        with self._uow() as uow:
            exc = _open(uow, exception_id)
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
            exc = _open(uow, exception_id)
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
            exc = _open(uow, exception_id)
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
            exc = _open(uow, exception_id)
            user = uow.accounts.user(owner)
            if user is None or user.is_disabled:
                raise InvalidInput(f"no active user {owner!r}", location="owner")
            uid = exc.study_instance_uid
            study = uow.studies.get(uid)
            if study is None:
                raise ConflictingState(f"study {uid} of exception {exc.id} is not indexed")
            now = self._clock.now()
            action_id = uow.reconciliations.add(
                ReconciliationAction(
                    id=0,
                    exception_id=exc.id,
                    study_instance_uid=uid,
                    action=ASSIGN_OWNER,
                    actor=actor.user_id,
                    at=now,
                    detail=owner,
                    before_state=study.state,
                    before_patient=study.patient,
                    before_accession=study.accession_number,
                    before_owner=exc.owner,
                )
            )
            uow.exceptions.set_owner(exc.id, owner)
            uow.audit.append(self._event(actor, uid, f"{ASSIGN_OWNER} {owner}"), now)
            uow.commit()
            return Done(action_id, study.state)

    def undo(self, action_id: int, actor: ActiveParticipant) -> StudyState:
        """Restore the study and its exception exactly as they were before the action."""
        with self._uow() as uow:
            action = uow.reconciliations.get(action_id)
            if action is None:
                raise InvalidInput(f"no reconciliation action {action_id}", location="action")
            if action.undone_at is not None:
                raise ConflictingState(f"action {action_id} was already undone")
            if action.action == ASSIGN_OWNER:
                return self._undo_owner(uow, action, actor)
            exc = uow.exceptions.get(action.exception_id)
            if exc is None or exc.resolved_at is None:
                raise ConflictingState("the exception was reopened since; undo the later action")
            now = self._clock.now()
            uow.studies.set_match(
                action.study_instance_uid,
                action.before_state,
                action.before_patient,
                action.before_accession,
            )
            uow.exceptions.reopen(action.exception_id)
            uow.reconciliations.mark_undone(action_id, now)
            uow.audit.append(
                self._event(actor, action.study_instance_uid, f"undo {action.action}"), now
            )
            uow.commit()
            return action.before_state

    def _undo_owner(
        self, uow: UnitOfWork, action: ReconciliationAction, actor: ActiveParticipant
    ) -> StudyState:
        exc = uow.exceptions.get(action.exception_id)
        if exc is None or exc.owner != action.detail:
            raise ConflictingState("the owner changed since; undo the later action")
        now = self._clock.now()
        uow.exceptions.set_owner(exc.id, action.before_owner)
        uow.reconciliations.mark_undone(action.id, now)
        uid = action.study_instance_uid
        uow.audit.append(self._event(actor, uid, f"undo {ASSIGN_OWNER}"), now)
        study = uow.studies.get(uid)
        uow.commit()
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
        action_id = uow.reconciliations.add(
            ReconciliationAction(
                id=0,
                exception_id=exc.id,
                study_instance_uid=uid,
                action=action,
                actor=actor.user_id,
                at=now,
                detail=detail,
                before_state=study.state,
                before_patient=study.patient,
                before_accession=study.accession_number,
            )
        )
        uow.studies.set_match(uid, state, patient, accession)
        uow.exceptions.resolve(exc.id, now, action)
        if state is StudyState.PUBLISHED:
            uow.events.record_match(uid, MatchOutcomeKind.RECONCILED, now)
            for hook in self._on_published:  # what publishing causes, same transaction
                hook(uow, uid, now)
        uow.audit.append(self._event(actor, uid, action), now)
        return Done(action_id, state)

    def _event(self, actor: ActiveParticipant, uid: str, what: str) -> AuditEvent:
        return instances_accessed(
            self._source,
            actor,
            self._clock.now(),
            action=Action.UPDATE,
            studies=[audit_study(uid)],
            description=f"reconciliation: {what}",
        )


def _open(uow: UnitOfWork, exception_id: int) -> ExceptionRecord:
    exc = uow.exceptions.get(exception_id)
    if exc is None:
        raise InvalidInput(f"no exception {exception_id}", location="exception")
    if exc.resolved_at is not None:
        raise ConflictingState(f"exception {exception_id} is already resolved ({exc.resolution})")
    return exc


__all__ = ["Done", "Reconciliation"]
