"""Routing: versioned rules, what they send where, and the jobs that forward it.

Stored instances of published studies are routed by the active rule version:
`instance` rules through a route_instance job per instance (real-time forwarding),
`study_stable` rules through one route_study job per study that runs once no instance has
arrived for `stable_after`. Held studies wait for reconciliation: their route_study job
comes back until the study is published (then instance rules apply to it too) or rejected.
Each instance goes to a destination once per version of its content (the forwards record),
never back to the AE it came from; a destination that refuses some instances gets only
those again when the forward job retries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Protocol

from pacsflow.domain.audit import ActiveParticipant, AuditSource, EventTypes
from pacsflow.domain.audit_events import security_alert
from pacsflow.domain.calendar import local_time
from pacsflow.domain.errors import ConflictingState, InvalidInput, NotFound, TransientError
from pacsflow.domain.events import InstanceStored, ProcedureCompleted, StudyPublished
from pacsflow.domain.jobs import Job, NewJob, RetryLater
from pacsflow.domain.orders import AccessionNumber
from pacsflow.domain.routing import (
    Alert,
    ForwardState,
    RuleSet,
    RuleVersion,
    Trigger,
    destinations_for,
)
from pacsflow.domain.routing_conditions import RoutingContext
from pacsflow.domain.routing_diff import RouteDifference, dry_run
from pacsflow.domain.studies import (
    ArrivedInstance,
    InstanceRecord,
    StudyFilter,
    StudyRecord,
    StudyState,
)
from pacsflow.domain.uids import Uid
from pacsflow.workflow.events import EventBus
from pacsflow.workflow.ports.clock import Clock
from pacsflow.workflow.ports.routing import RuleText
from pacsflow.workflow.ports.uow import UnitOfWork, UnitOfWorkFactory
from pacsflow.workflow.routing_triggers import (
    BATCH,
    ROUTE_INSTANCE_JOB,
    ROUTE_STUDY_JOB,
    route_completed,
    route_published,
    route_stored,
)

log = logging.getLogger(__name__)

FORWARD_JOB = "forward"
#: Instances one forward job sends before it ends (the next job goes on).
_MAX_PER_RUN = 5000


def _forward_key(destination: str) -> str:
    return f"forward:{destination}"


#: DICOM attributes of a stored instance: keyword -> values as text.
Attributes = Mapping[str, tuple[str, ...]]


class Sender(Protocol):
    """Sends stored instances to a destination (the DICOM adapter implements it)."""

    def send(self, destination: str, instances: Sequence[InstanceRecord]) -> Mapping[Uid, str]:
        """Send them; per SOP Instance UID "" when accepted, else why not.

        Raises TransientError when the destination cannot be reached at all.
        """
        ...


@dataclass(frozen=True, slots=True)
class VersionView:
    """A rule version and whether it is the active one."""

    version: RuleVersion
    is_active: bool


class Routing:
    """Manages the rule versions and runs the routing and forwarding jobs."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        attributes: Callable[[InstanceRecord], Attributes],
        sender: Sender,
        *,
        rule_text: RuleText,
        is_destination: Callable[[str], bool],
        audit_source: AuditSource,
        called_ae: str = "",
        site: str = "",
        stable_after: timedelta = timedelta(seconds=60),
        is_keyword: Callable[[str], bool] | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._attributes = attributes
        self._sender = sender
        self._rule_text = rule_text
        self._is_destination = is_destination
        self._audit_source = audit_source
        self._called_ae = called_ae
        self._site = site
        self.stable_after = stable_after
        self._is_keyword = is_keyword
        self._parsed: dict[int, RuleSet] = {}

    # -- managing versions ----------------------------------------------------------------------

    def _audit(self, uow: UnitOfWork, actor: ActiveParticipant, what: str) -> None:
        """Record a routing change (a network configuration change) in the same transaction."""
        now = self._clock.now()
        event = security_alert(
            self._audit_source,
            actor,
            now,
            alert=EventTypes.NETWORK_CONFIGURATION,
            resource="routing rules",
            description=what,
        )
        uow.audit.append(event, now)

    def save(
        self, text: str, actor: ActiveParticipant, comment: str = "", *, activate: bool = False
    ) -> int:
        """Save a new version of the rules (checked first); its number."""
        self._checked(text)
        with self._uow() as uow:
            now = self._clock.now()
            number = uow.routing.add_version(text, actor.user_id, comment, now)
            self._audit(uow, actor, f"saved version {number}")
            if activate:
                uow.routing.activate(number, actor.user_id, now)
                self._audit(uow, actor, f"activated version {number}")
            uow.commit()
        return number

    def versions(self) -> list[VersionView]:
        """Every version, newest first, with the active one marked."""
        with self._uow(read_only=True) as uow:
            active = self._active_number(uow)
            return [VersionView(v, v.version == active) for v in uow.routing.versions()]

    def version(self, number: int) -> RuleVersion:
        """One version; UnknownVersion (NotFound) when there is none."""
        with self._uow(read_only=True) as uow:
            found = uow.routing.version(number)
        if found is None:
            raise UnknownVersion(f"no routing rules version {number}")
        return found

    def active(self) -> RuleVersion | None:
        """The active version, if any was activated."""
        with self._uow(read_only=True) as uow:
            number = self._active_number(uow)
            return uow.routing.version(number) if number is not None else None

    def activate(self, number: int, actor: ActiveParticipant) -> None:
        """Make a saved version the active one (new studies are routed by it)."""
        with self._uow() as uow:
            if uow.routing.version(number) is None:
                raise UnknownVersion(f"no routing rules version {number}")
            uow.routing.activate(number, actor.user_id, self._clock.now())
            self._audit(uow, actor, f"activated version {number}")
            uow.commit()

    def rollback(self, actor: ActiveParticipant) -> int:
        """Activate the version that was active before the current one; its number."""
        with self._uow() as uow:
            history = [a.version for a in uow.routing.activations(1000)]
            if not history:
                raise ConflictingState("no routing rules were ever activated")
            previous = next((v for v in history[1:] if v != history[0]), None)
            if previous is None:
                raise ConflictingState("there is no earlier active version to roll back to")
            uow.routing.activate(previous, actor.user_id, self._clock.now())
            self._audit(uow, actor, f"rolled back from version {history[0]} to {previous}")
            uow.commit()
        return previous

    def diff(self, old: int, new: int) -> str:
        """A unified diff of two versions' rules."""
        return self._rule_text.diff(
            self.version(old).text,
            self.version(new).text,
            old_label=f"version {old}",
            new_label=f"version {new}",
        )

    def dry_run(
        self, candidate_text: str, since: datetime, until: datetime, limit: int = 10_000
    ) -> list[RouteDifference]:
        """Where the active rules send each study received in [since, until), and the candidate.

        Times without an offset are the site's (the clock's zone). Nothing is sent.
        """
        candidate = self._checked(candidate_text)
        window = StudyFilter(
            is_published_only=True,
            limit=limit,
            received_from=_aware(since, self._clock.zone),
            received_until=_aware(until, self._clock.zone),
        )
        with self._uow(read_only=True) as uow:
            _, active = self._rules(uow) or (0, RuleSet(()))
            studies = uow.studies.find(window)
            items = [(str(s.study_instance_uid), self._study_context(uow, s)) for s in studies]
        return dry_run(active, candidate, [(k, c) for k, c in items if c is not None])

    def _checked(self, text: str) -> RuleSet:
        """Parsed rules whose destinations are all configured (InvalidInput otherwise)."""
        rules = self._rule_text.parse(text, is_keyword=self._is_keyword)
        unknown = sorted(
            {d for r in rules.rules for d in r.destinations if not self._is_destination(d)}
        )
        if unknown:
            raise InvalidInput(
                f"unknown destination(s) {', '.join(unknown)}: configure them as peers first"
            )
        return rules

    # -- subscribers (inside the transaction of the event) ------------------------------------

    def subscribe_to(self, bus: EventBus) -> None:
        """Route what is stored, published or completed."""
        bus.subscribe(InstanceStored, self.on_stored)
        bus.subscribe(StudyPublished, self.on_published)
        bus.subscribe(ProcedureCompleted, self.on_procedure_completed)

    def on_stored(self, uow: UnitOfWork, events: Sequence[InstanceStored]) -> None:
        """Enqueue the routing arriving instances need, in the transaction that stores them."""
        found = self._rules(uow)  # once per batch: the active version
        if found is not None:
            route_stored(uow, found[1], events, self.stable_after)

    def on_published(self, uow: UnitOfWork, events: Sequence[StudyPublished]) -> None:
        """Held studies published by reconciliation or a late match: route them now."""
        if self._rules(uow) is not None:
            route_published(uow, events)

    def on_procedure_completed(self, uow: UnitOfWork, events: Sequence[ProcedureCompleted]) -> None:
        """MPPS COMPLETED: the study is complete, its study_stable rules run now."""
        found = self._rules(uow)
        if found is not None:
            route_completed(uow, found[1], events)

    def on_duplicate(self, arrived: ArrivedInstance) -> None:
        """An instance we already hold arrived again: if we had forwarded it, say so.

        It is not stored or routed again, so a loop through other systems stops here; the
        alert tells the operator which peer sent it back.
        """
        inst = arrived.instance
        with self._uow() as uow:
            sent = uow.routing.sent_to(inst.sop_instance_uid)
            if not sent:
                return
            peer = arrived.source_ae.strip()
            kind = "returned" if peer in sent else "routing_loop"
            detail = (
                f"instance {inst.sop_instance_uid} of study {inst.study_instance_uid}, "
                f"forwarded to {', '.join(sent)}, came back from {peer or 'an unnamed AE'}"
            )
            uow.routing.raise_alert(kind, inst.study_instance_uid, peer, detail, self._clock.now())
            uow.commit()
        log.warning("routing: %s", detail)

    def alerts(self, limit: int = 100) -> list[Alert]:
        """Routing alerts, most recent first."""
        with self._uow(read_only=True) as uow:
            return list(uow.routing.alerts(limit))

    # -- job handlers -------------------------------------------------------------------------

    def route_instance(self, job: Job) -> None:
        """The route_instance job: send each arrived instance where the instance rules say."""
        uids = [Uid(str(u)) for u in job.payload.get("sop_uids", [])]
        if "sop_uid" in job.payload:  # a job queued before arrivals were batched
            uids.append(Uid(str(job.payload["sop_uid"])))
        with self._uow() as uow:
            found = self._rules(uow)
            if found is None:
                return
            number, rules = found
            studies: dict[Uid, StudyRecord | None] = {}
            by_destination: dict[str, list[InstanceRecord]] = {}
            for instance in uow.studies.instances(sop_uids=uids, is_published_only=False):
                uid = instance.study_instance_uid
                if uid not in studies:
                    studies[uid] = uow.studies.get(uid)
                study = studies[uid]
                if study is None or study.state is not StudyState.PUBLISHED:
                    continue  # the study job routes it once reconciled
                ctx = self._context(uow, study, self._attributes(instance))
                for destination in destinations_for(rules, ctx, Trigger.INSTANCE):
                    by_destination.setdefault(destination, []).append(instance)
            for destination, instances in by_destination.items():
                self._queue(uow, number, frozenset({destination}), instances)
            uow.commit()

    def route_study(self, job: Job) -> None:
        """The route_study job: once the study is stable and published, apply every rule."""
        study_uid = Uid(str(job.payload["study_uid"]))
        now = self._clock.now()
        with self._uow() as uow:
            study = uow.studies.get(study_uid)
            found = self._rules(uow)
            if study is None or found is None or study.state is StudyState.REJECTED:
                return
            if study.state is StudyState.HELD:
                raise RetryLater(now + self.stable_after, "held: waits for reconciliation")
            last = uow.studies.last_received(study_uid)
            is_completed = bool(job.payload.get("completed"))  # MPPS COMPLETED: no waiting
            if not is_completed and last is not None and now - last < self.stable_after:
                raise RetryLater(last + self.stable_after, "instances still arriving")
            number, rules = found
            instances = list(uow.studies.instances(study_uids=[study_uid]))
            if not instances:
                return
            study_ctx = self._context(uow, study, self._study_attributes(study, instances[0]))
            stable = destinations_for(rules, study_ctx, Trigger.STUDY_STABLE)
            self._queue(uow, number, stable, instances)
            if any(r.enabled and r.trigger is Trigger.INSTANCE for r in rules.rules):
                for instance in instances:
                    ctx = self._context(uow, study, self._attributes(instance))
                    dests = destinations_for(rules, ctx, Trigger.INSTANCE)
                    self._queue(uow, number, dests, [instance])
            uow.commit()

    def forward(self, job: Job) -> None:
        """The forward job: send everything queued for its destination, in batches.

        One job runs per destination at a time (its ordering key), so instances queued while
        it runs are picked up by the same association stream instead of one association
        each. Refused instances stay queued with the peer's answer and the job retries.
        """
        destination = str(job.payload["destination"])
        sent_total = 0
        while sent_total < _MAX_PER_RUN:
            with self._uow(read_only=True) as uow:
                pending = uow.routing.pending_forwards(destination, BATCH)
                found = {
                    i.sop_instance_uid: i
                    for i in uow.studies.instances(
                        sop_uids=[f.sop_instance_uid for f in pending], is_published_only=False
                    )
                }
            if not pending:
                break
            todo = [found[f.sop_instance_uid] for f in pending if f.sop_instance_uid in found]
            gone = [f.sop_instance_uid for f in pending if f.sop_instance_uid not in found]
            results = self._sender.send(destination, todo) if todo else {}
            failed = {uid: why for uid, why in results.items() if why}
            with self._uow() as uow:
                now = self._clock.now()
                for uid in gone:  # rejected (IOCM) or no longer stored: never sent
                    uow.routing.settle_forward(
                        uid, destination, ForwardState.FAILED, now, "no longer stored or visible"
                    )
                for instance in todo:
                    uid = instance.sop_instance_uid
                    why = results.get(uid, "not sent")
                    state = ForwardState.QUEUED if why else ForwardState.SENT
                    uow.routing.settle_forward(uid, destination, state, now, why)
                uow.commit()
            sent_total += len(todo) - len(failed)
            if failed:
                first = next(iter(failed.values()))
                raise TransientError(
                    f"{destination} refused {len(failed)} of {len(todo)} instance(s): {first}"
                )
        if sent_total:
            log.info("forwarded %d instance(s) to %s", sent_total, destination)

    def forwards(self, study_uid: Uid) -> list[tuple[str, str, str, str]]:
        """(SOP Instance UID, destination, state, last error) for a study."""
        with self._uow(read_only=True) as uow:
            return [
                (f.sop_instance_uid, f.destination, f.state.value, f.last_error)
                for f in uow.routing.forwards(study_uid)
            ]

    # -- helpers ----------------------------------------------------------------------------

    def _active_number(self, uow: UnitOfWork) -> int | None:
        # Asked of the database each time, not cached: another node may have activated one.
        return uow.routing.active_version()

    def _rules(self, uow: UnitOfWork) -> tuple[int, RuleSet] | None:
        number = self._active_number(uow)
        if number is None:
            return None
        rules = self._parsed.get(number)
        if rules is None:
            version = uow.routing.version(number)
            if version is None:
                return None
            rules = self._parsed.setdefault(number, self._rule_text.parse(version.text))
        return number, rules

    def _queue(
        self,
        uow: UnitOfWork,
        number: int,
        destinations: frozenset[str],
        instances: Sequence[InstanceRecord],
    ) -> None:
        """Record the forwards and make sure a forward job will run for each destination."""
        now = self._clock.now()
        for destination in sorted(destinations):
            fresh = [i for i in instances if uow.routing.queue_forward(i, destination, number, now)]
            key = _forward_key(destination)
            # One waiting job per destination suffices: it sends whatever is queued then.
            if fresh and not uow.jobs.has_job(key, pending_only=True):
                uow.jobs.enqueue(
                    NewJob(
                        FORWARD_JOB,
                        {"destination": destination},
                        destination=destination,
                        ordering_key=key,
                    ),
                    now,
                )

    def _study_attributes(self, study: StudyRecord, first: InstanceRecord) -> Attributes:
        attrs = dict(self._attributes(first))
        attrs["ModalitiesInStudy"] = tuple(study.modalities)
        return attrs

    def _study_context(self, uow: UnitOfWork, study: StudyRecord) -> RoutingContext | None:
        instances = uow.studies.instances(study_uids=[study.study_instance_uid])
        if not instances:
            return None
        return self._context(uow, study, self._study_attributes(study, instances[0]))

    def _context(self, uow: UnitOfWork, study: StudyRecord, attrs: Attributes) -> RoutingContext:
        order = (
            uow.orders.by_accession(AccessionNumber(study.accession_number))
            if study.accession_number
            else None
        )
        received = study.received_at or self._clock.now()
        return RoutingContext(
            attributes=attrs,
            calling_ae=study.source_ae,
            called_ae=self._called_ae,
            site=self._site,
            priority=order.priority.value if order else "",
            procedure_code=order.procedure_code.value if order and order.procedure_code else "",
            time_of_day=local_time(received, self._clock.zone).time(),
        )


def _aware(moment: datetime, zone: tzinfo) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


class UnknownVersion(NotFound):
    """No routing rules version has this number."""


__all__ = [
    "FORWARD_JOB",
    "ROUTE_INSTANCE_JOB",
    "ROUTE_STUDY_JOB",
    "Routing",
    "Sender",
    "UnknownVersion",
    "VersionView",
]
