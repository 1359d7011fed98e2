"""Prefetch: have the relevant priors local before the radiologist opens the case.

A new scheduled order (ORM NW) or a newly published study enqueues a prefetch job in the
transaction that records it. The job searches every configured archive (study-level C-FIND)
for every identifier of the patient (merged and linked ones included) and the local index,
chooses the relevant priors (domain.prefetch), and enqueues one retrieval job per prior that
is not local yet. Retrievals are rate-limited per archive by the job queue's per-destination
limit, retried with backoff, and each records its latency. A study fetched as a prior is
published under the patient it was fetched for (it is no exam: it never waits in the
exceptions queue).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Protocol

from pacsflow.domain.calendar import local_day
from pacsflow.domain.events import InstanceStored, OrderPlaced, StudyPublished
from pacsflow.domain.jobs import Job, NewJob
from pacsflow.domain.orders import Order
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier
from pacsflow.domain.prefetch import (
    CurrentStudy,
    PriorCandidate,
    PriorRecord,
    PriorState,
    RelevanceRule,
    choose_priors,
    ordered_body_part,
)
from pacsflow.domain.studies import StudyFilter, StudyState
from pacsflow.domain.uids import Uid
from pacsflow.workflow.events import EventBus
from pacsflow.workflow.ports.clock import Clock
from pacsflow.workflow.ports.uow import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger(__name__)

PREFETCH_JOB = "prefetch"
RETRIEVE_JOB = "retrieve_prior"
LOCAL = ""  # the archive name of the local index


class Archives(Protocol):
    """Remote archives searched and retrieved from (the DICOM adapter implements it)."""

    def find_studies(self, archive: str, patient: PatientIdentifier) -> list[PriorCandidate]:
        """The archive's studies of this patient identifier (TransientError when unreachable)."""
        ...

    def retrieve_study(self, archive: str, study_uid: str) -> int:
        """Have the archive send the study here; how many instances it sent."""
        ...


class Prefetch:
    """Chooses and fetches priors; the jobs' handlers and the triggers' hooks."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        archives: Archives,
        archive_names: Sequence[str],
        rules: Sequence[RelevanceRule] = (),
        body_parts: Mapping[str, str] | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._archives = archives
        self._names = tuple(archive_names)
        self._rules = tuple(rules)
        self._body_parts = dict(body_parts or {})

    @property
    def is_enabled(self) -> bool:
        """True when some archive is configured to fetch priors from."""
        return bool(self._names)

    # -- subscribers (inside the transaction of the event) --------------------------------

    def subscribe_to(self, bus: EventBus) -> None:
        """Fetch priors for new orders and newly published studies."""
        bus.subscribe(OrderPlaced, self.on_order)
        bus.subscribe(InstanceStored, self.on_stored)
        bus.subscribe(StudyPublished, self.on_published)

    def on_order(self, uow: UnitOfWork, events: Sequence[OrderPlaced]) -> None:
        """New scheduled orders: fetch the priors their reading will need."""
        if not self.is_enabled:
            return
        for event in events:
            self._for_order(uow, event.order, event.at)

    def _for_order(self, uow: UnitOfWork, order: Order, now: datetime) -> None:
        reference = order.scheduled_start or now
        code = order.procedure_code
        body_part = ordered_body_part(
            code.value if code else "",
            (code.meaning if code else "", order.requested_procedure_description),
            self._body_parts,
        )
        uow.jobs.enqueue(
            NewJob(
                PREFETCH_JOB,
                {
                    "key": f"order:{order.accession_number}",
                    "patient_id": order.patient.value,
                    "issuer": order.patient.issuer,
                    "modalities": [order.modality] if order.modality else [],
                    "body_part": body_part,
                    "procedure_code": code.value if code else "",
                    "reference_date": local_day(reference, self._clock.zone).isoformat(),
                    "exclude": [order.study_instance_uid] if order.study_instance_uid else [],
                },
                ordering_key=f"prefetch:order:{order.accession_number}",
            ),
            now,
        )

    def on_stored(self, uow: UnitOfWork, events: Sequence[InstanceStored]) -> None:
        """Stored instances of published studies: see on_published; once per study and batch."""
        seen: set[Uid] = set()
        for event in events:
            if event.state is not StudyState.PUBLISHED or event.study_uid in seen:
                continue
            if event.stored.source_ae.strip() in self._names:
                continue
            seen.add(event.study_uid)  # its first instance names the modality and body part
            inst = event.stored.instance
            self._for_study(uow, event.study_uid, event.at, (inst.modality,), inst.body_part)

    def on_published(self, uow: UnitOfWork, events: Sequence[StudyPublished]) -> None:
        """Held studies published by reconciliation or a late match: fetch their priors."""
        for event in events:
            self._for_study(uow, event.study_uid, event.at, (), "")

    def _for_study(
        self,
        uow: UnitOfWork,
        study_uid: Uid,
        now: datetime,
        modalities: tuple[str, ...],
        body_part: str,
    ) -> None:
        """Fetch the priors of a published study, once (not for a study that is a prior)."""
        key = f"prefetch:study:{study_uid}"
        if not self.is_enabled or uow.jobs.has_job(key, unfinished_only=False):
            return
        if uow.prefetch.expected_patient(study_uid) is not None:
            return  # a prior arriving: its own priors are not wanted
        study = uow.studies.get(study_uid)
        if study is None or study.patient is None or study.state is not StudyState.PUBLISHED:
            return
        uow.jobs.enqueue(
            NewJob(
                PREFETCH_JOB,
                {
                    "key": f"study:{study_uid}",
                    "patient_id": study.patient.value,
                    "issuer": study.patient.issuer,
                    "modalities": [m for m in (modalities or study.modalities) if m],
                    "body_part": body_part,
                    "procedure_code": "",
                    "reference_date": (
                        study.study_date or local_day(now, self._clock.zone)
                    ).isoformat(),
                    "exclude": [study_uid],
                },
                ordering_key=key,
            ),
            now,
        )

    # -- job handlers -------------------------------------------------------------------------

    def search(self, job: Job) -> None:
        """The prefetch job: search every archive and the local index, choose, enqueue."""
        p = job.payload
        key = str(p["key"])
        asked = PatientIdentifier(PatientId(str(p["patient_id"])), Issuer(str(p["issuer"])))
        current = CurrentStudy(
            reference_date=date.fromisoformat(str(p["reference_date"])),
            modalities=tuple(str(m) for m in p["modalities"]),
            body_part=str(p["body_part"]),
            procedure_code=str(p["procedure_code"]),
            exclude=frozenset(str(u) for u in p["exclude"]),
        )
        with self._uow(read_only=True) as uow:
            patient = uow.patients.find(asked)
            identifiers = patient.identifiers if patient else (asked,)
            owner = patient.primary if patient else asked
            local = self._local_candidates(uow, owner)
        here = {c.study_instance_uid for c in local}
        remote: list[PriorCandidate] = []
        for archive in self._names:
            for identifier in identifiers:
                found = self._archives.find_studies(archive, identifier)
                remote.extend(c for c in found if c.study_instance_uid not in here)
        # Local first: a prior already here is never fetched again.
        chosen = choose_priors(current, [*local, *remote], self._rules)
        now = self._clock.now()
        with self._uow() as uow:
            for prior in chosen:
                is_local = prior.archive == LOCAL
                record = PriorRecord(
                    request_key=key,
                    study_instance_uid=Uid(prior.study_instance_uid),
                    archive=prior.archive,
                    patient=owner,
                    state=PriorState.LOCAL if is_local else PriorState.QUEUED,
                    requested_at=job.created_at,
                    study_date=prior.study_date,
                    modalities=prior.modalities,
                    description=prior.description,
                    completed_at=now if is_local else None,
                )
                if uow.prefetch.add(record) and not is_local:
                    uow.jobs.enqueue(
                        NewJob(
                            RETRIEVE_JOB,
                            {"key": key, "study_uid": prior.study_instance_uid},
                            destination=prior.archive,
                        ),
                        now,
                    )
            uow.commit()
        log.info(
            "prefetch %s: %d candidate(s), %d chosen (%d already local)",
            key,
            len(local) + len(remote),
            len(chosen),
            sum(1 for c in chosen if c.archive == LOCAL),
        )

    def retrieve(self, job: Job) -> None:
        """The retrieve_prior job: have the archive send one prior study here."""
        key, study_uid = str(job.payload["key"]), Uid(str(job.payload["study_uid"]))
        archive = job.destination
        self._set(key, study_uid, PriorState.RETRIEVING)
        try:
            count = self._archives.retrieve_study(archive, study_uid)
        except Exception as exc:
            self._set(key, study_uid, PriorState.FAILED, error=f"{type(exc).__name__}: {exc}")
            raise
        self._set(key, study_uid, PriorState.DONE, instances=count)

    def priors(self, request_key: str | None = None, limit: int = 500) -> list[PriorRecord]:
        """Chosen priors and their retrieval state (of one request: "order:ACC", "study:UID")."""
        with self._uow(read_only=True) as uow:
            return list(uow.prefetch.list(request_key, limit))

    # -- helpers ----------------------------------------------------------------------------

    def _set(
        self, key: str, study_uid: Uid, state: PriorState, *, instances: int = 0, error: str = ""
    ) -> None:
        with self._uow() as uow:
            uow.prefetch.update(
                key, study_uid, state, self._clock.now(), instances=instances, error=error
            )
            uow.commit()

    def _local_candidates(self, uow: UnitOfWork, owner: PatientIdentifier) -> list[PriorCandidate]:
        found = []
        for study in uow.studies.find(StudyFilter(patient=owner, limit=1000)):
            found.append(
                PriorCandidate(
                    study_instance_uid=study.study_instance_uid,
                    archive=LOCAL,
                    study_date=study.study_date,
                    modalities=study.modalities,
                    body_parts=study.body_parts,
                    description=study.study_description,
                    instance_count=study.instance_count,
                )
            )
        return found


__all__ = ["LOCAL", "PREFETCH_JOB", "RETRIEVE_JOB", "Archives", "Prefetch"]
