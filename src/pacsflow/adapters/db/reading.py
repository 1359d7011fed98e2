"""The reading worklist's queries, triage scores and claims, in SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from pacsflow.adapters.db import tables as t
from pacsflow.adapters.db.statements import CHUNK
from pacsflow.adapters.db.study_rows import visible
from pacsflow.adapters.db.timestamps import aware, utc
from pacsflow.domain.jobs import JobState
from pacsflow.domain.matching import MatchOutcomeKind
from pacsflow.domain.orders import Priority
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier
from pacsflow.domain.prefetch import PriorState
from pacsflow.domain.reading import Claim, ReadingItem
from pacsflow.domain.reports import ReportStatus
from pacsflow.domain.studies import StudyState
from pacsflow.domain.uids import Uid

_S = t.studies
_O = t.orders
_C = t.reading_claims
_R = t.reports


def _finally_reported() -> sa.ColumnElement[bool]:
    """The study has a final or corrected version with no cancellation after it.

    The same fold as domain.reports.study_status (versions in arrival order, a cancellation
    goes back to unread); it only narrows the query, the caller checks the statuses.
    """
    final, later = _R.alias("final"), _R.alias("cancel")
    return sa.exists().where(
        final.c.attached_study_uid == _S.c.study_instance_uid,
        final.c.status.in_([ReportStatus.FINAL.value, ReportStatus.CORRECTED.value]),
        ~sa.exists().where(
            later.c.attached_study_uid == _S.c.study_instance_uid,
            later.c.status == ReportStatus.CANCELLED.value,
            later.c.pk > final.c.pk,
        ),
    )


def _candidate_select() -> sa.Select[Any]:
    ident, pat = t.patient_identifiers, t.patients
    exc, events = t.exceptions, t.match_events
    return (
        sa.select(
            _S.c.pk,
            _S.c.study_instance_uid,
            _S.c.accession_number,
            _S.c.patient_id,
            _S.c.patient_issuer,
            _S.c.received_family_name,
            _S.c.received_given_name,
            _S.c.study_description,
            _S.c.created_at,
            _S.c.triage_score,
            _O.c.priority,
            _O.c.procedure_code,
            _O.c.procedure_code_meaning,
            _O.c.requested_procedure_description,
            _O.c.modality.label("order_modality"),
            _C.c.reader,
            _C.c.claimed_at,
            _C.c.expires_at,
            pat.c.family_name,
            pat.c.given_name,
        )
        .select_from(
            _S.outerjoin(
                _O,
                sa.and_(
                    _O.c.accession_number == _S.c.accession_number, _S.c.accession_number != ""
                ),
            )
            .outerjoin(_C, _C.c.study_instance_uid == _S.c.study_instance_uid)
            .outerjoin(
                ident,
                sa.and_(
                    ident.c.value == _S.c.patient_id,
                    ident.c.issuer == sa.func.coalesce(_S.c.patient_issuer, ""),
                ),
            )
            .outerjoin(pat, pat.c.pk == ident.c.patient_pk)
        )
        .where(
            _S.c.state == StudyState.PUBLISHED.value,
            ~sa.exists().where(exc.c.study_pk == _S.c.pk, exc.c.resolved_at.is_(None)),
            ~sa.exists().where(
                events.c.study_instance_uid == _S.c.study_instance_uid,
                events.c.kind == MatchOutcomeKind.PRIOR.value,
            ),
            ~_finally_reported(),
            sa.exists()
            .select_from(t.instances.join(t.series, t.instances.c.series_pk == t.series.c.pk))
            .where(t.series.c.study_pk == _S.c.pk, visible()),
        )
        .order_by(_S.c.pk)
    )


def _name(family: str | None, given: str | None) -> str:
    return "^".join(p for p in (family or "", given or "") if p)


def _item(m: Any, modalities: tuple[str, ...]) -> ReadingItem:
    claim = (
        Claim(
            Uid(m["study_instance_uid"]),
            m["reader"],
            aware(m["claimed_at"]),
            aware(m["expires_at"]),
        )
        if m["reader"] is not None
        else None
    )
    registered = _name(m["family_name"], m["given_name"])
    return ReadingItem(
        study_instance_uid=Uid(m["study_instance_uid"]),
        accession_number=m["accession_number"],
        # A study published without an order (assigned to a patient) is read as routine.
        priority=Priority(m["priority"]) if m["priority"] else Priority.ROUTINE,
        waiting_since=aware(m["created_at"]),
        patient=PatientIdentifier(PatientId(m["patient_id"]), Issuer(m["patient_issuer"] or ""))
        if m["patient_id"] is not None
        else None,
        patient_name=registered or _name(m["received_family_name"], m["received_given_name"]),
        modalities=modalities or ((m["order_modality"],) if m["order_modality"] else ()),
        procedure_code=m["procedure_code"] or "",
        procedure_description=m["requested_procedure_description"]
        or m["procedure_code_meaning"]
        or m["study_description"],
        triage_score=m["triage_score"],
        claim=claim,
    )


class SqlReadingStore:
    """The reading worklist's store over one connection, inside the caller's transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def candidates(self, study_uids: Sequence[Uid] = ()) -> Sequence[ReadingItem]:
        """Published studies that may still need reading (see the port)."""
        query = _candidate_select()
        if study_uids:
            query = query.where(_S.c.study_instance_uid.in_(list(study_uids)))
        rows = [r._mapping for r in self._c.execute(query)]
        modalities = self._modalities([int(m["pk"]) for m in rows])
        return [_item(m, modalities.get(int(m["pk"]), ())) for m in rows]

    def _modalities(self, study_pks: Sequence[int]) -> dict[int, tuple[str, ...]]:
        found: dict[int, set[str]] = {}
        for start in range(0, len(study_pks), CHUNK):
            rows = self._c.execute(
                sa.select(t.series.c.study_pk, t.series.c.modality)
                .join(t.instances, t.instances.c.series_pk == t.series.c.pk)
                .where(t.series.c.study_pk.in_(study_pks[start : start + CHUNK]), visible())
                .distinct()
            )
            for pk, modality in rows:
                if modality:
                    found.setdefault(int(pk), set()).add(modality)
        return {pk: tuple(sorted(mods)) for pk, mods in found.items()}

    def set_triage_score(self, study_uid: Uid, score: float | None) -> bool:
        """Record a study's AI triage score (None clears it); False when there is no such study."""
        done = self._c.execute(
            sa.update(_S).where(_S.c.study_instance_uid == study_uid).values(triage_score=score)
        )
        return done.rowcount > 0

    def prior_states(self, request_keys: Sequence[str]) -> dict[str, list[PriorState]]:
        """The states of the priors chosen for each of these prefetch requests that has any."""
        found: dict[str, list[PriorState]] = {}
        keys = list(dict.fromkeys(request_keys))
        for start in range(0, len(keys), CHUNK):
            rows = self._c.execute(
                sa.select(t.priors.c.request_key, t.priors.c.state).where(
                    t.priors.c.request_key.in_(keys[start : start + CHUNK])
                )
            )
            for key, state in rows:
                found.setdefault(key, []).append(PriorState(state))
        return found

    def unfinished_jobs(self, ordering_keys: Sequence[str]) -> set[str]:
        """Those of these ordering keys that have a pending or running job."""
        found: set[str] = set()
        keys = list(dict.fromkeys(ordering_keys))
        unfinished = [JobState.PENDING.value, JobState.RUNNING.value]
        for start in range(0, len(keys), CHUNK):
            rows = self._c.execute(
                sa.select(t.jobs.c.ordering_key)
                .where(
                    t.jobs.c.ordering_key.in_(keys[start : start + CHUNK]),
                    t.jobs.c.state.in_(unfinished),
                )
                .distinct()
            )
            found.update(key for (key,) in rows)
        return found

    def claim_of(self, study_uid: Uid) -> Claim | None:
        """The last claim on a study (possibly expired)."""
        row = self._c.execute(sa.select(_C).where(_C.c.study_instance_uid == study_uid)).first()
        if row is None:
            return None
        return Claim(
            Uid(row.study_instance_uid), row.reader, aware(row.claimed_at), aware(row.expires_at)
        )

    def put_claim(self, claim: Claim, now: datetime) -> Claim:
        """Store the claim unless another reader holds an unexpired one; the claim that stands."""
        values = {
            "reader": claim.reader,
            "claimed_at": utc(claim.claimed_at),
            "expires_at": utc(claim.expires_at),
        }
        # The condition is checked by the database, so two readers claiming at once on
        # PostgreSQL cannot both win (the second UPDATE re-reads the row the first changed).
        taken = self._c.execute(
            sa.update(_C)
            .where(
                _C.c.study_instance_uid == claim.study_instance_uid,
                sa.or_(_C.c.reader == claim.reader, _C.c.expires_at <= utc(now)),
            )
            .values(**values)
        )
        if taken.rowcount == 0 and self.claim_of(claim.study_instance_uid) is None:
            try:
                with self._c.begin_nested():
                    self._c.execute(
                        sa.insert(_C).values(study_instance_uid=claim.study_instance_uid, **values)
                    )
            except sa.exc.IntegrityError:
                pass  # another reader's claim was inserted first: it stands
        standing = self.claim_of(claim.study_instance_uid)
        assert standing is not None
        return standing

    def delete_claim(self, study_uid: Uid, reader: str) -> bool:
        """Remove the reader's claim on a study; False when they hold none."""
        done = self._c.execute(
            sa.delete(_C).where(_C.c.study_instance_uid == study_uid, _C.c.reader == reader)
        )
        return done.rowcount > 0


__all__ = ["SqlReadingStore"]
