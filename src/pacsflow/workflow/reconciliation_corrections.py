"""Correcting a study's identifiers (patient ID, issuer, accession number), and undoing it.

The corrected identity is matched again like a study that just arrived: published when it
matches, else held for the reason matching gives now.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pacsflow.domain.audit import ActiveParticipant
from pacsflow.domain.errors import ConflictingState, InvalidInput
from pacsflow.domain.exception_queue import CORRECT, CORRECT_HELD, ExceptionRecord, HoldReason
from pacsflow.domain.matching import Held, Matched, MatchOutcomeKind, ReceivedIdentity
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier
from pacsflow.domain.reconciliation import ReconciliationAction
from pacsflow.domain.studies import StudyRecord, StudyState
from pacsflow.workflow.ingest import decide
from pacsflow.workflow.ports.uow import UnitOfWork
from pacsflow.workflow.reconciliation_context import UNDONE, ActionContext, Done, action_on

#: The longest identifier the index keeps (Patient ID is LO, 64 characters).
_MAX_IDENTIFIER = 64


@dataclass(frozen=True, slots=True)
class Correction:
    """Identifiers to set on a study; None keeps the present one ("" clears an issuer or an
    accession number)."""

    patient_id: str | None = None
    issuer: str | None = None
    accession_number: str | None = None

    @property
    def is_empty(self) -> bool:
        """True when it changes nothing."""
        return self.patient_id is None and self.issuer is None and self.accession_number is None

    def applied_to(self, identity: ReceivedIdentity) -> ReceivedIdentity:
        """The identity with these identifiers instead of its own."""
        value = identity.patient.value if self.patient_id is None else self.patient_id.strip()
        issuer = identity.patient.issuer if self.issuer is None else self.issuer.strip()
        accession = identity.accession_number
        if self.accession_number is not None:
            accession = self.accession_number.strip()
        return replace(
            identity,
            patient=PatientIdentifier(PatientId(value), Issuer(issuer)),
            accession_number=accession,
        )

    def describe(self) -> str:
        """The identifiers set, as recorded with the action."""
        given = (
            ("patient_id", self.patient_id),
            ("issuer", self.issuer),
            ("accession_number", self.accession_number),
        )
        return " ".join(f"{k}={v.strip()}" for k, v in given if v is not None)


def check(correction: Correction) -> None:
    """Refuse identifiers the index cannot keep or a data set cannot carry."""
    for name, value in (
        ("patient_id", correction.patient_id),
        ("issuer", correction.issuer),
        ("accession_number", correction.accession_number),
    ):
        if value is None:
            continue
        text = value.strip()
        if len(text) > _MAX_IDENTIFIER or not text.isprintable() or "\\" in text:
            raise InvalidInput(
                f"{name} must be at most {_MAX_IDENTIFIER} printable characters without '\\'",
                location=name,
            )
        if name == "patient_id" and not text:
            raise InvalidInput("a study needs a patient ID", location=name)


def correct(
    ctx: ActionContext,
    uow: UnitOfWork,
    study: StudyRecord,
    exc: ExceptionRecord | None,
    correction: Correction,
    actor: ActiveParticipant,
) -> Done:
    """Set the study's identifiers and match it again; the caller commits."""
    uid = study.study_instance_uid
    current = exc.received if exc is not None else identity_of(uow, study)
    corrected = corrected_identity(study, exc, current, correction)
    if corrected == current:
        raise InvalidInput("the study already has these identifiers", location="correction")
    outcome = decide(uow, corrected)
    now = ctx.clock.now()
    before = action_on(study, exc.id if exc else None, CORRECT, actor, now, correction.describe())
    if isinstance(outcome, Matched):
        action_id = uow.reconciliations.add(before)
        state = StudyState.PUBLISHED
        uow.studies.set_match(uid, state, outcome.patient.primary, outcome.order.accession_number)
        if exc is not None:
            uow.exceptions.resolve(exc.id, now, CORRECT)
        if study.state is not StudyState.PUBLISHED:
            uow.events.record_match(uid, MatchOutcomeKind.RECONCILED, now)
        ctx.published(uow, uid, now)  # a new order may have reports waiting
    else:
        hold = hold_for(outcome, corrected)
        if exc is not None:  # held still: the same exception, for its new reason
            action_id = uow.reconciliations.add(
                replace(before, action=CORRECT_HELD, before_hold=_hold_of(exc))
            )
            uow.exceptions.rehold(exc.id, hold)
        else:
            opened = uow.exceptions.add(
                uid, hold.reason, hold.source, hold.detail, corrected, hold.candidate_order, now
            )
            action_id = uow.reconciliations.add(
                replace(before, action=CORRECT_HELD, opened_exception_id=opened)
            )
            uow.events.record_match(uid, MatchOutcomeKind.HELD, now, hold.reason, hold.source)
        state = StudyState.HELD
        uow.studies.set_match(uid, state, *held_under(outcome, corrected))
    ctx.audit(uow, actor, [uid], f"{CORRECT} {correction.describe()}", now)
    return Done(action_id, state)


def undo_correct(
    ctx: ActionContext, uow: UnitOfWork, action: ReconciliationAction, actor: ActiveParticipant
) -> StudyState:
    """Put back the identifiers and the exception as they were before a correction."""
    now = ctx.clock.now()
    if action.exception_id is not None:
        exc = uow.exceptions.get(action.exception_id)
        is_resolved = exc is not None and exc.resolved_at is not None
        if action.action == CORRECT:  # it resolved the exception
            if not is_resolved:
                raise ConflictingState("the exception was reopened since; undo the later action")
            uow.exceptions.reopen(action.exception_id)
        else:
            if exc is None or is_resolved or action.before_hold is None:
                raise ConflictingState(
                    "the exception was resolved since; undo what resolved it first"
                )
            uow.exceptions.rehold(exc.id, action.before_hold)
    if action.opened_exception_id is not None:
        opened = uow.exceptions.get(action.opened_exception_id)
        if opened is None or opened.resolved_at is not None:
            raise ConflictingState(
                "the exception it opened was resolved since; undo what resolved it first"
            )
        uow.exceptions.resolve(opened.id, now, UNDONE)
    uow.studies.set_match(
        action.study_instance_uid,
        action.before_state,
        action.before_patient,
        action.before_accession,
    )
    uow.reconciliations.mark_undone(action.id, now)
    ctx.audit(uow, actor, [action.study_instance_uid], f"undo {action.action}", now)
    return action.before_state


def identity_of(uow: UnitOfWork, study: StudyRecord) -> ReceivedIdentity:
    """The identity the index gives a study that has no open exception.

    A published study is known by its registered patient (and that patient's demographics,
    which matching accepted) and its accession number.
    """
    received = study.received
    if study.patient is None:
        return replace(received, accession_number=study.accession_number)
    patient = uow.patients.find(study.patient)
    return ReceivedIdentity(
        patient=study.patient,
        demographics=patient.demographics if patient else received.demographics,
        accession_number=study.accession_number,
        study_instance_uid=study.study_instance_uid,
    )


def corrected_identity(
    study: StudyRecord,
    exc: ExceptionRecord | None,
    current: ReceivedIdentity,
    correction: Correction,
) -> ReceivedIdentity:
    """The identity to match after the correction."""
    corrected = correction.applied_to(current)
    if exc is None and corrected.patient != current.patient:
        # Another patient: compare what the images say about the person, not the record's.
        corrected = replace(corrected, demographics=study.received.demographics)
    return corrected


def hold_for(outcome: Held, identity: ReceivedIdentity) -> HoldReason:
    """Why a study with this identity is held."""
    return HoldReason(
        outcome.reason,
        outcome.source,
        outcome.detail,
        identity,
        outcome.order.accession_number if outcome.order else None,
    )


def held_under(outcome: Held, identity: ReceivedIdentity) -> tuple[PatientIdentifier | None, str]:
    """The patient and accession number a held study is indexed under (as at ingest)."""
    return (
        outcome.patient.primary if outcome.patient else None,
        outcome.order.accession_number if outcome.order else identity.accession_number,
    )


def _hold_of(exc: ExceptionRecord) -> HoldReason:
    return HoldReason(exc.reason, exc.source, exc.detail, exc.received, exc.candidate_order)


__all__ = [
    "Correction",
    "check",
    "correct",
    "corrected_identity",
    "held_under",
    "hold_for",
    "identity_of",
    "undo_correct",
]
