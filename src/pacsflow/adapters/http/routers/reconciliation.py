"""Reconciliation: match, assign, reject, correct, split, give an owner; undo any of them."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, Field

from pacsflow.adapters.http.auth import Actor
from pacsflow.adapters.http.context import Services
from pacsflow.adapters.http.routes import Routes
from pacsflow.adapters.http.schemas import DbId
from pacsflow.domain.access import Permission
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier
from pacsflow.workflow.reconciliation import Correction, Done

routes = Routes(tags=["exceptions"])
StudyUid = Annotated[str, Path(max_length=64)]


class MatchIn(BaseModel):
    """Match a held study to an order."""

    accession_number: str


class AssignIn(BaseModel):
    """Assign a held study to a registered patient."""

    patient_id: str
    issuer: str = ""


class RejectIn(BaseModel):
    """Reject a held study (hidden from clinical use, kept)."""

    reason: str


class OwnerIn(BaseModel):
    """Name the user who works an exception."""

    owner: str = Field(max_length=64)


class CorrectIn(BaseModel):
    """Identifiers to set on a study (a field left out keeps its value)."""

    patient_id: str | None = Field(default=None, max_length=64)
    issuer: str | None = Field(default=None, max_length=64)
    accession_number: str | None = Field(default=None, max_length=64)

    def correction(self) -> Correction:
        """The correction the workflow applies."""
        return Correction(self.patient_id, self.issuer, self.accession_number)


class SplitIn(CorrectIn):
    """Move a series to another study: an existing one, or a new one (its identity: the
    source's, with the identifiers given here)."""

    series_instance_uid: str = Field(max_length=64)
    target_study_uid: str | None = Field(default=None, max_length=64)


class SplitOut(BaseModel):
    """The result of a split: its id (to undo it), and where the series went."""

    action_id: int
    state: str
    target_study_uid: str
    target_state: str


class ActionOut(BaseModel):
    """The result of a reconciliation action: its id, to undo it, and the study's state."""

    action_id: int
    state: str


def _action(done: Done) -> ActionOut:
    return ActionOut(action_id=done.action_id, state=done.state.value)


@routes.post("/api/exceptions/{exception_id}/assign-owner", Permission.RECONCILE)
def assign_owner(exception_id: DbId, body: OwnerIn, actor: Actor, services: Services) -> ActionOut:
    """Name the user who works the exception (undo restores the previous owner)."""
    return _action(services.reconciliation.assign_owner(exception_id, body.owner, actor))


@routes.post("/api/exceptions/{exception_id}/match", Permission.RECONCILE)
def match(exception_id: DbId, body: MatchIn, actor: Actor, services: Services) -> ActionOut:
    """The held study belongs to this order: it is published under the order's patient."""
    return _action(
        services.reconciliation.match_to_order(exception_id, body.accession_number, actor)
    )


@routes.post("/api/exceptions/{exception_id}/assign", Permission.RECONCILE)
def assign(exception_id: DbId, body: AssignIn, actor: Actor, services: Services) -> ActionOut:
    """The held study belongs to this registered patient: it is published."""
    identifier = PatientIdentifier(PatientId(body.patient_id), Issuer(body.issuer))
    return _action(services.reconciliation.assign_to_patient(exception_id, identifier, actor))


@routes.post("/api/exceptions/{exception_id}/reject", Permission.RECONCILE)
def reject(exception_id: DbId, body: RejectIn, actor: Actor, services: Services) -> ActionOut:
    """Hide the held study from clinical use for good (kept, with the reason)."""
    return _action(services.reconciliation.reject(exception_id, body.reason, actor))


@routes.post("/api/exceptions/{exception_id}/correct", Permission.RECONCILE)
def correct(exception_id: DbId, body: CorrectIn, actor: Actor, services: Services) -> ActionOut:
    """Correct the held study's patient ID, issuer or accession number and match it again:
    published when it matches now, else held for the new reason."""
    return _action(services.reconciliation.correct(exception_id, body.correction(), actor))


@routes.post("/api/studies/{study_uid}/correct", Permission.RECONCILE, tags=["studies"])
def correct_study(
    study_uid: StudyUid, body: CorrectIn, actor: Actor, services: Services
) -> ActionOut:
    """Correct a study's identifiers, held or published, and match it again (a published
    study that no longer matches is held)."""
    return _action(services.reconciliation.correct_study(study_uid, body.correction(), actor))


@routes.post("/api/studies/{study_uid}/split", Permission.RECONCILE, tags=["studies"])
def split(study_uid: StudyUid, body: SplitIn, actor: Actor, services: Services) -> SplitOut:
    """Move one series out of the study: to target_study_uid, or to a new study matched
    like a new arrival (with the identifiers given). Undo moves it back."""
    done = services.reconciliation.split(
        study_uid,
        body.series_instance_uid,
        actor,
        target_study_uid=body.target_study_uid,
        correction=body.correction(),
    )
    return SplitOut(
        action_id=done.action_id,
        state=done.state.value,
        target_study_uid=done.target_study_uid,
        target_state=done.target_state.value,
    )


@routes.post("/api/reconciliation/{action_id}/undo", Permission.RECONCILE)
def undo(action_id: DbId, actor: Actor, services: Services) -> ActionOut:
    """Restore the study and its exception exactly as they were before the action."""
    state = services.reconciliation.undo(action_id, actor)
    return ActionOut(action_id=action_id, state=state.value)
