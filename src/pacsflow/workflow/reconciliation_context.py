"""What every reconciliation action shares: its record, its audit event, what it publishes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pacsflow.domain.audit import Action, ActiveParticipant, AuditEvent, AuditSource
from pacsflow.domain.audit_events import instances_accessed
from pacsflow.domain.audit_events import study_object as audit_study
from pacsflow.domain.errors import ConflictingState, InvalidInput
from pacsflow.domain.events import StudyPublished
from pacsflow.domain.exception_queue import ExceptionRecord
from pacsflow.domain.reconciliation import ReconciliationAction
from pacsflow.domain.studies import StudyRecord, StudyState
from pacsflow.domain.uids import Uid, is_valid_uid
from pacsflow.workflow.events import EventBus
from pacsflow.workflow.ports.clock import Clock
from pacsflow.workflow.ports.uow import UnitOfWork

#: How an exception opened by an action is closed when the action is undone.
UNDONE = "undone"


@dataclass(frozen=True, slots=True)
class Done:
    """The result of a reconciliation action: its id (to undo it) and the study's new state."""

    action_id: int
    state: StudyState


@dataclass(frozen=True, slots=True)
class ActionContext:
    """The clock, the audit source and the event bus every action and undo works with."""

    clock: Clock
    source: AuditSource
    events: EventBus

    def audit(
        self,
        uow: UnitOfWork,
        actor: ActiveParticipant,
        uids: Sequence[str],
        what: str,
        now: datetime,
    ) -> None:
        """Record in the audit trail that the actor changed these studies."""
        uow.audit.append(self._event(actor, uids, what), now)

    def published(self, uow: UnitOfWork, uid: Uid, now: datetime) -> None:
        """Tell the subscribers a study is published (what it causes, same transaction)."""
        self.events.publish(uow, [StudyPublished(uid, now)])

    def _event(self, actor: ActiveParticipant, uids: Sequence[str], what: str) -> AuditEvent:
        return instances_accessed(
            self.source,
            actor,
            self.clock.now(),
            action=Action.UPDATE,
            studies=[audit_study(uid) for uid in uids],
            description=f"reconciliation: {what}",
        )


def action_on(
    study: StudyRecord,
    exception_id: int | None,
    action: str,
    actor: ActiveParticipant,
    at: datetime,
    detail: str,
) -> ReconciliationAction:
    """The record of an action on a study, with the study's identity before it (for undo)."""
    return ReconciliationAction(
        id=0,
        exception_id=exception_id,
        study_instance_uid=study.study_instance_uid,
        action=action,
        actor=actor.user_id,
        at=at,
        detail=detail,
        before_state=study.state,
        before_patient=study.patient,
        before_accession=study.accession_number,
    )


def indexed(uow: UnitOfWork, uid: Uid, location: str = "study") -> StudyRecord:
    """The indexed, not rejected study with this UID; InvalidInput or ConflictingState else."""
    if not is_valid_uid(uid):
        raise InvalidInput(f"{uid!r} is not a valid UID", location=location)
    study = uow.studies.get(uid)
    if study is None:
        raise InvalidInput(f"no study {uid}", location=location)
    if study.state is StudyState.REJECTED:
        raise ConflictingState(f"study {uid} was rejected")
    return study


def open_exception(uow: UnitOfWork, exception_id: int) -> ExceptionRecord:
    """The open exception with this id; InvalidInput or ConflictingState else."""
    exc = uow.exceptions.get(exception_id)
    if exc is None:
        raise InvalidInput(f"no exception {exception_id}", location="exception")
    if exc.resolved_at is not None:
        raise ConflictingState(f"exception {exception_id} is already resolved ({exc.resolution})")
    return exc


__all__ = ["UNDONE", "ActionContext", "Done", "action_on", "indexed", "open_exception"]
