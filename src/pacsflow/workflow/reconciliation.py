"""Reconciliation: people work the exceptions queue; every action is audited and undoable.

Corrections and splits change the index only: the stored objects stay as received, and the
identity (Study Instance UID included) is coerced from the index when they leave.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from pacsflow.domain.audit import Action, ActiveParticipant, AuditEvent, AuditSource
from pacsflow.domain.audit_events import instances_accessed
from pacsflow.domain.audit_events import study_object as audit_study
from pacsflow.domain.errors import ConflictingState, InvalidInput
from pacsflow.domain.events import StudyPublished
from pacsflow.domain.exception_queue import (
    ASSIGN_OWNER,
    CORRECT,
    CORRECT_HELD,
    SPLIT,
    ExceptionRecord,
    HoldReason,
)
from pacsflow.domain.matching import Held, Matched, MatchOutcomeKind, ReceivedIdentity
from pacsflow.domain.orders import AccessionNumber, OrderStatus
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier
from pacsflow.domain.reconciliation import ReconciliationAction
from pacsflow.domain.studies import StudyRecord, StudyState
from pacsflow.domain.uids import Uid, is_valid_uid, new_uid
from pacsflow.workflow.events import EventBus
from pacsflow.workflow.ingest import decide
from pacsflow.workflow.ports.clock import Clock
from pacsflow.workflow.ports.uow import UnitOfWork, UnitOfWorkFactory

#: How an exception opened by an action is closed when the action is undone.
UNDONE = "undone"
#: The longest identifier the index keeps (Patient ID is LO, 64 characters).
_MAX_IDENTIFIER = 64


@dataclass(frozen=True, slots=True)
class Done:
    """The result of a reconciliation action: its id (to undo it) and the study's new state."""

    action_id: int
    state: StudyState


@dataclass(frozen=True, slots=True)
class SplitDone:
    """The result of a split: its id (to undo it), the source's state, where the series went."""

    action_id: int
    state: StudyState
    target_study_uid: Uid
    target_state: StudyState


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
        self._source = source
        self._events = events or EventBus()

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
            uow.audit.append(self._event(actor, [uid], f"{ASSIGN_OWNER} {owner}"), now)
            uow.commit()
            return Done(action_id, study.state)

    def correct(self, exception_id: int, correction: Correction, actor: ActiveParticipant) -> Done:
        """Set a held study's patient ID, issuer or accession number and match it again.

        Published when it matches now (the exception is resolved), else held for the reason
        matching gives now (the exception stays open, its reason and identifiers updated).
        """
        _check(correction)
        with self._uow() as uow:
            exc = _open(uow, exception_id)
            done = self._correct(uow, _indexed(uow, exc.study_instance_uid), exc, correction, actor)
            uow.commit()
            return done

    def correct_study(
        self, study_uid: str, correction: Correction, actor: ActiveParticipant
    ) -> Done:
        """Correct a study's identifiers, held or published (see correct).

        A published study that no longer matches is held, with a new exception.
        """
        _check(correction)
        with self._uow() as uow:
            study = _indexed(uow, Uid(study_uid.strip()))
            exc = uow.exceptions.open_for(study.study_instance_uid)
            done = self._correct(uow, study, exc, correction, actor)
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
        _check(correction)
        series = Uid(series_uid.strip())
        with self._uow() as uow:
            source = _indexed(uow, Uid(study_uid.strip()))
            uid = source.study_instance_uid
            if uow.studies.series_study(series) != uid:
                raise InvalidInput(
                    f"study {uid} has no series {series}", location="series_instance_uid"
                )
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
            now = self._clock.now()
            opened: int | None = None
            if target_study_uid is not None and target_study_uid.strip():
                target = _indexed(uow, Uid(target_study_uid.strip()), location="target_study_uid")
                if target.study_instance_uid == uid:
                    raise InvalidInput(
                        "the target is the study itself", location="target_study_uid"
                    )
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
                state, opened = self._file_new_study(uow, source, exc, to, correction, now)
            if state is StudyState.PUBLISHED:
                self._published(uow, to, now)
            action_id = uow.reconciliations.add(
                ReconciliationAction(
                    id=0,
                    exception_id=exc.id if exc else None,
                    study_instance_uid=uid,
                    action=SPLIT,
                    actor=actor.user_id,
                    at=now,
                    detail=" ".join(
                        p for p in (f"series {series} to study {to}", correction.describe()) if p
                    ),
                    before_state=source.state,
                    before_patient=source.patient,
                    before_accession=source.accession_number,
                    opened_exception_id=opened,
                    series_instance_uid=series,
                    target_study_uid=to,
                    is_new_target=is_new,
                )
            )
            uow.audit.append(self._event(actor, [uid, to], f"{SPLIT} series {series}"), now)
            uow.commit()
            return SplitDone(action_id, source.state, to, state)

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
                return self._undo_owner(uow, action, actor)
            _refuse_if_later(uow, action)
            if action.action == SPLIT:
                return self._undo_split(uow, action, actor)
            if action.action in (CORRECT, CORRECT_HELD):
                return self._undo_correct(uow, action, actor)
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
            uow.reconciliations.mark_undone(action_id, now)
            uow.audit.append(
                self._event(actor, [action.study_instance_uid], f"undo {action.action}"), now
            )
            uow.commit()
            return action.before_state

    def _correct(
        self,
        uow: UnitOfWork,
        study: StudyRecord,
        exc: ExceptionRecord | None,
        correction: Correction,
        actor: ActiveParticipant,
    ) -> Done:
        uid = study.study_instance_uid
        current = exc.received if exc is not None else _identity_of(uow, study)
        corrected = _corrected(study, exc, current, correction)
        if corrected == current:
            raise InvalidInput("the study already has these identifiers", location="correction")
        outcome = decide(uow, corrected)
        now = self._clock.now()
        before = ReconciliationAction(
            id=0,
            exception_id=exc.id if exc else None,
            study_instance_uid=uid,
            action=CORRECT,
            actor=actor.user_id,
            at=now,
            detail=correction.describe(),
            before_state=study.state,
            before_patient=study.patient,
            before_accession=study.accession_number,
        )
        if isinstance(outcome, Matched):
            action_id = uow.reconciliations.add(before)
            state = StudyState.PUBLISHED
            uow.studies.set_match(
                uid, state, outcome.patient.primary, outcome.order.accession_number
            )
            if exc is not None:
                uow.exceptions.resolve(exc.id, now, CORRECT)
            if study.state is not StudyState.PUBLISHED:
                uow.events.record_match(uid, MatchOutcomeKind.RECONCILED, now)
            self._published(uow, uid, now)  # a new order may have reports waiting
        else:
            hold = _hold(outcome, corrected)
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
            uow.studies.set_match(uid, state, *_held_under(outcome, corrected))
        uow.audit.append(self._event(actor, [uid], f"{CORRECT} {correction.describe()}"), now)
        return Done(action_id, state)

    def _file_new_study(
        self,
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
        current = exc.received if exc is not None else _identity_of(uow, source)
        identity = replace(_corrected(source, exc, current, correction), study_instance_uid=uid)
        outcome = decide(uow, identity)
        if isinstance(outcome, Matched):
            state = StudyState.PUBLISHED
            uow.studies.set_match(
                uid, state, outcome.patient.primary, outcome.order.accession_number
            )
            uow.events.record_match(uid, MatchOutcomeKind.RECONCILED, now)
            return state, None
        hold = _hold(outcome, identity)
        uow.studies.set_match(uid, StudyState.HELD, *_held_under(outcome, identity))
        opened = uow.exceptions.add(
            uid, hold.reason, hold.source, hold.detail, identity, hold.candidate_order, now
        )
        uow.events.record_match(uid, MatchOutcomeKind.HELD, now, hold.reason, hold.source)
        return StudyState.HELD, opened

    def _published(self, uow: UnitOfWork, uid: Uid, now: datetime) -> None:
        self._events.publish(uow, [StudyPublished(uid, now)])  # what it causes, same transaction

    def _undo_correct(
        self, uow: UnitOfWork, action: ReconciliationAction, actor: ActiveParticipant
    ) -> StudyState:
        now = self._clock.now()
        if action.exception_id is not None:
            exc = uow.exceptions.get(action.exception_id)
            is_resolved = exc is not None and exc.resolved_at is not None
            if action.action == CORRECT:  # it resolved the exception
                if not is_resolved:
                    raise ConflictingState(
                        "the exception was reopened since; undo the later action"
                    )
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
        uow.audit.append(
            self._event(actor, [action.study_instance_uid], f"undo {action.action}"), now
        )
        uow.commit()
        return action.before_state

    def _undo_split(
        self, uow: UnitOfWork, action: ReconciliationAction, actor: ActiveParticipant
    ) -> StudyState:
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
        now = self._clock.now()
        uow.studies.move_series(series, source)
        if is_worked:
            left = uow.exceptions.open_for(target)
            if left is not None:
                uow.exceptions.resolve(left.id, now, UNDONE)
        elif action.is_new_target:
            uow.studies.remove_study(target)
        uow.reconciliations.mark_undone(action.id, now)
        uow.audit.append(self._event(actor, [source, target], f"undo {SPLIT}"), now)
        study = uow.studies.get(source)
        uow.commit()
        return study.state if study is not None else action.before_state

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
        uow.audit.append(self._event(actor, [uid], f"undo {ASSIGN_OWNER}"), now)
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
            self._published(uow, uid, now)
        uow.audit.append(self._event(actor, [uid], action), now)
        return Done(action_id, state)

    def _event(self, actor: ActiveParticipant, uids: Sequence[str], what: str) -> AuditEvent:
        return instances_accessed(
            self._source,
            actor,
            self._clock.now(),
            action=Action.UPDATE,
            studies=[audit_study(uid) for uid in uids],
            description=f"reconciliation: {what}",
        )


def _indexed(uow: UnitOfWork, uid: Uid, location: str = "study") -> StudyRecord:
    if not is_valid_uid(uid):
        raise InvalidInput(f"{uid!r} is not a valid UID", location=location)
    study = uow.studies.get(uid)
    if study is None:
        raise InvalidInput(f"no study {uid}", location=location)
    if study.state is StudyState.REJECTED:
        raise ConflictingState(f"study {uid} was rejected")
    return study


def _check(correction: Correction) -> None:
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


def _identity_of(uow: UnitOfWork, study: StudyRecord) -> ReceivedIdentity:
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


def _corrected(
    study: StudyRecord,
    exc: ExceptionRecord | None,
    current: ReceivedIdentity,
    correction: Correction,
) -> ReceivedIdentity:
    corrected = correction.applied_to(current)
    if exc is None and corrected.patient != current.patient:
        # Another patient: compare what the images say about the person, not the record's.
        corrected = replace(corrected, demographics=study.received.demographics)
    return corrected


def _hold(outcome: Held, identity: ReceivedIdentity) -> HoldReason:
    return HoldReason(
        outcome.reason,
        outcome.source,
        outcome.detail,
        identity,
        outcome.order.accession_number if outcome.order else None,
    )


def _held_under(outcome: Held, identity: ReceivedIdentity) -> tuple[PatientIdentifier | None, str]:
    """The patient and accession number a held study is indexed under (as at ingest)."""
    return (
        outcome.patient.primary if outcome.patient else None,
        outcome.order.accession_number if outcome.order else identity.accession_number,
    )


def _hold_of(exc: ExceptionRecord) -> HoldReason:
    return HoldReason(exc.reason, exc.source, exc.detail, exc.received, exc.candidate_order)


def _refuse_if_later(uow: UnitOfWork, action: ReconciliationAction) -> None:
    """Undo goes backwards: a later action on the same studies must be undone first."""
    studies = [action.study_instance_uid]
    if action.target_study_uid is not None:
        studies.append(action.target_study_uid)
    for later in uow.reconciliations.later(action.id, studies):
        if later.action != ASSIGN_OWNER:  # an owner change leaves identities alone
            raise ConflictingState(f"action {later.id} ({later.action}) came later: undo it first")


def _open(uow: UnitOfWork, exception_id: int) -> ExceptionRecord:
    exc = uow.exceptions.get(exception_id)
    if exc is None:
        raise InvalidInput(f"no exception {exception_id}", location="exception")
    if exc.resolved_at is not None:
        raise ConflictingState(f"exception {exception_id} is already resolved ({exc.resolution})")
    return exc


__all__ = ["UNDONE", "Correction", "Done", "Reconciliation", "SplitDone"]
