"""What stored, published and completed studies enqueue for routing (event subscribers).

Called in the transaction of the event with the active rules; a study's route_study job is
looked for once per batch of events, not once per instance.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from pacsflow.domain.events import InstanceStored, ProcedureCompleted, StudyPublished
from pacsflow.domain.jobs import NewJob
from pacsflow.domain.routing import RuleSet, Trigger
from pacsflow.domain.studies import StudyState
from pacsflow.domain.uids import Uid
from pacsflow.workflow.ports.uow import UnitOfWork

ROUTE_INSTANCE_JOB = "route_instance"
ROUTE_STUDY_JOB = "route_study"
#: Instances one route_instance job takes (and forwards a forward job reads at a time).
BATCH = 500
_ROUTE_INSTANCES_KEY = "route-instances"


def route_stored(
    uow: UnitOfWork, rules: RuleSet, events: Sequence[InstanceStored], stable_after: timedelta
) -> None:
    """Enqueue the routing arriving instances need under these rules."""
    has_instance = any(r.enabled and r.trigger is Trigger.INSTANCE for r in rules.rules)
    has_stable = any(r.enabled and r.trigger is Trigger.STUDY_STABLE for r in rules.rules)
    seen: set[Uid] = set()  # studies whose route_study job was looked for in this batch
    for event in events:
        if has_instance and event.state is StudyState.PUBLISHED:
            # One route job takes a batch of arrivals: a job (three commits) per instance
            # would cost more than the routing itself.
            uow.jobs.enqueue_or_extend(
                NewJob(ROUTE_INSTANCE_JOB, ordering_key=_ROUTE_INSTANCES_KEY),
                "sop_uids",
                event.stored.instance.sop_instance_uid,
                BATCH,
                event.at,
            )
        is_study_routed = has_stable or (has_instance and event.state is StudyState.HELD)
        if not is_study_routed or event.study_uid in seen:
            continue
        seen.add(event.study_uid)
        key = _study_key(event.study_uid)
        if not uow.jobs.has_job(key):
            job = NewJob(
                ROUTE_STUDY_JOB,
                {"study_uid": event.study_uid},
                ordering_key=key,
                run_at=event.at + stable_after,
            )
            uow.jobs.enqueue(job, event.at)


def route_published(uow: UnitOfWork, events: Sequence[StudyPublished]) -> None:
    """Held studies published by reconciliation or a late match: route them now."""
    for event in events:
        key = _study_key(event.study_uid)
        if not uow.jobs.has_job(key):
            job = NewJob(ROUTE_STUDY_JOB, {"study_uid": event.study_uid}, ordering_key=key)
            uow.jobs.enqueue(job, event.at)


def route_completed(uow: UnitOfWork, rules: RuleSet, events: Sequence[ProcedureCompleted]) -> None:
    """MPPS COMPLETED: the study is complete, its study_stable rules run now."""
    if not any(r.enabled and r.trigger is Trigger.STUDY_STABLE for r in rules.rules):
        return
    for event in events:
        key = _study_key(event.study_uid)
        if not uow.jobs.expedite(key, event.at, {"completed": True}):
            payload = {"study_uid": event.study_uid, "completed": True}
            uow.jobs.enqueue(NewJob(ROUTE_STUDY_JOB, payload, ordering_key=key), event.at)


def _study_key(study_uid: Uid) -> str:
    return f"route-study:{study_uid}"


__all__ = [
    "BATCH",
    "ROUTE_INSTANCE_JOB",
    "ROUTE_STUDY_JOB",
    "route_completed",
    "route_published",
    "route_stored",
]
