"""Reconciliation actions in SQL, with what each one changed (for undo)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from pacsflow.adapters.db import tables as t
from pacsflow.adapters.db.timestamps import aware
from pacsflow.domain.exception_queue import HoldReason
from pacsflow.domain.matching import ExceptionReason, MismatchSource, ReceivedIdentity
from pacsflow.domain.orders import AccessionNumber
from pacsflow.domain.patients import Demographics, Issuer, PatientId, PatientIdentifier, PersonName
from pacsflow.domain.reconciliation import ReconciliationAction
from pacsflow.domain.studies import StudyState
from pacsflow.domain.uids import Uid


class SqlReconciliationLog:
    """Reconciliation actions in SQL."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def add(self, action: ReconciliationAction) -> int:
        """Record an action; its id."""
        before = action.before_patient
        return int(
            self._c.execute(
                sa.insert(t.reconciliation_actions)
                .values(
                    exception_pk=action.exception_id,
                    study_instance_uid=action.study_instance_uid,
                    action=action.action,
                    actor=action.actor,
                    at=action.at,
                    detail=action.detail,
                    before_state=action.before_state.value,
                    before_patient_id=before.value if before else None,
                    before_issuer=before.issuer if before else None,
                    before_accession=action.before_accession,
                    before_owner=action.before_owner,
                    before_hold=_hold_json(action.before_hold),
                    opened_exception_pk=action.opened_exception_id,
                    series_instance_uid=action.series_instance_uid,
                    target_study_uid=action.target_study_uid,
                    is_new_target=action.is_new_target,
                )
                .returning(t.reconciliation_actions.c.pk)
            ).scalar_one()
        )

    def get(self, action_id: int) -> ReconciliationAction | None:
        """One action."""
        row = self._c.execute(
            sa.select(t.reconciliation_actions).where(t.reconciliation_actions.c.pk == action_id)
        ).first()
        return None if row is None else _action(row)

    def later(self, action_id: int, study_uids: Sequence[Uid]) -> Sequence[ReconciliationAction]:
        """Actions after this one, not undone, on (or splitting into) any of these studies."""
        a = t.reconciliation_actions.c
        rows = self._c.execute(
            sa.select(t.reconciliation_actions)
            .where(
                a.pk > action_id,
                a.undone_at.is_(None),
                sa.or_(a.study_instance_uid.in_(study_uids), a.target_study_uid.in_(study_uids)),
            )
            .order_by(a.pk)
        ).all()
        return [_action(r) for r in rows]

    def has_actions(self, exception_id: int) -> bool:
        """True when any action was recorded on the exception."""
        a = t.reconciliation_actions.c
        return (
            self._c.execute(sa.select(a.pk).where(a.exception_pk == exception_id).limit(1)).first()
            is not None
        )

    def mark_undone(self, action_id: int, at: datetime) -> None:
        """Record that an action was undone."""
        self._c.execute(
            sa.update(t.reconciliation_actions)
            .where(t.reconciliation_actions.c.pk == action_id)
            .values(undone_at=at)
        )


def _action(row: sa.Row[Any]) -> ReconciliationAction:
    m = row._mapping
    return ReconciliationAction(
        id=int(m["pk"]),
        exception_id=int(m["exception_pk"]) if m["exception_pk"] is not None else None,
        study_instance_uid=Uid(m["study_instance_uid"]),
        action=m["action"],
        actor=m["actor"],
        at=aware(m["at"]),
        detail=m["detail"],
        before_state=StudyState(m["before_state"]),
        before_patient=(
            PatientIdentifier(PatientId(m["before_patient_id"]), Issuer(m["before_issuer"] or ""))
            if m["before_patient_id"] is not None
            else None
        ),
        before_accession=m["before_accession"],
        undone_at=aware(m["undone_at"]) if m["undone_at"] else None,
        before_owner=m["before_owner"],
        before_hold=_hold_from_json(m["before_hold"]),
        opened_exception_id=m["opened_exception_pk"],
        series_instance_uid=Uid(m["series_instance_uid"]) if m["series_instance_uid"] else None,
        target_study_uid=Uid(m["target_study_uid"]) if m["target_study_uid"] else None,
        is_new_target=bool(m["is_new_target"]),
    )


def _hold_json(hold: HoldReason | None) -> str | None:
    """A hold reason as the JSON text kept with an action (None stays NULL)."""
    if hold is None:
        return None
    r = hold.received
    d = r.demographics
    return json.dumps(
        {
            "reason": hold.reason.value,
            "source": hold.source.value,
            "detail": hold.detail,
            "candidate_order": hold.candidate_order,
            "patient_id": r.patient.value,
            "issuer": r.patient.issuer,
            "family_name": d.name.family,
            "given_name": d.name.given,
            "birth_date": d.birth_date.isoformat() if d.birth_date else None,
            "sex": d.sex,
            "accession_number": r.accession_number,
            "study_instance_uid": r.study_instance_uid,
        },
        sort_keys=True,
    )


def _hold_from_json(text: str | None) -> HoldReason | None:
    if not text:
        return None
    v = json.loads(text)
    birth = v["birth_date"]
    return HoldReason(
        reason=ExceptionReason(v["reason"]),
        source=MismatchSource(v["source"]),
        detail=v["detail"],
        received=ReceivedIdentity(
            patient=PatientIdentifier(PatientId(v["patient_id"]), Issuer(v["issuer"])),
            demographics=Demographics(
                name=PersonName(family=v["family_name"], given=v["given_name"]),
                birth_date=date.fromisoformat(birth) if birth else None,
                sex=v["sex"],
            ),
            accession_number=v["accession_number"],
            study_instance_uid=Uid(v["study_instance_uid"]),
        ),
        candidate_order=AccessionNumber(v["candidate_order"]) if v["candidate_order"] else None,
    )


__all__ = ["SqlReconciliationLog"]
