"""The reading worklist: published studies waiting for their final report, most urgent first.

Each entry says how long the study has waited against its priority's target, its report
status, whether the priors chosen for it are local, and who has claimed it. Studies in the
exceptions queue (held or rejected) never appear; neither do priors fetched from archives,
nor studies whose report is final or corrected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from pacsflow.domain.errors import ConflictingState, NotFound
from pacsflow.domain.prefetch import PriorState
from pacsflow.domain.reading import (
    Claim,
    ReadingFilter,
    ReadingItem,
    ReadingTargets,
    check_release,
    check_triage_score,
    is_overdue,
    matches,
    order_worklist,
    take_claim,
)
from pacsflow.domain.reports import ReportStatus, is_finally_reported
from pacsflow.domain.studies import StudyState
from pacsflow.domain.uids import Uid
from pacsflow.workflow.ports.clock import Clock
from pacsflow.workflow.ports.uow import UnitOfWork, UnitOfWorkFactory

_READY = frozenset({PriorState.LOCAL, PriorState.DONE})


class UnknownStudy(NotFound):
    """No study has this Study Instance UID."""


class NotOnWorklist(ConflictingState):
    """The study exists but is not waiting for reading (held, rejected, or finally reported)."""


@dataclass(frozen=True, slots=True)
class ReadingEntry:
    """One line of the reading worklist as of `now`."""

    item: ReadingItem
    report_status: ReportStatus
    waiting: timedelta
    target: timedelta
    is_overdue: bool
    claim: Claim | None  # the claim holding the study now (expired ones are not shown)
    site: str


def _request_keys(item: ReadingItem) -> tuple[str, ...]:
    """The prefetch requests made for the study: its order's, and its own on arrival."""
    keys = [f"study:{item.study_instance_uid}"]
    if item.accession_number:
        keys.insert(0, f"order:{item.accession_number}")
    return tuple(keys)


def priors_ready(states: Sequence[PriorState], is_searching: bool) -> bool | None:
    """True when every chosen prior is local; False while one is not (or the search runs);
    None when no prior was requested."""
    if is_searching:
        return False
    if not states:
        return None
    return all(s in _READY for s in states)


class ReadingWorklist:
    """The radiologists' list: ordering, filters, claims; and the triage score's setter."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        targets: ReadingTargets,
        claim_duration: timedelta,
        site: str = "",
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._targets = targets
        self._claim_duration = claim_duration
        self._site = site

    @property
    def targets(self) -> ReadingTargets:
        """The reading target of each priority."""
        return self._targets

    def entries(
        self, flt: ReadingFilter | None = None, *, site: str = "", limit: int = 500
    ) -> list[ReadingEntry]:
        """The worklist in reading order, narrowed by the filter, at most limit entries.

        Studies are kept by the node that serves them: a site other than this node's has
        none here.
        """
        if site and site != self._site:
            return []
        flt = flt or ReadingFilter()
        with self._uow(read_only=True) as uow:
            now = self._clock.now()
            wanted = [i for i in uow.reading.candidates() if matches(i, flt, now)]
            statuses = uow.reports.statuses([i.study_instance_uid for i in wanted])
            wanted = [
                i
                for i in wanted
                if not is_finally_reported(statuses.get(i.study_instance_uid, ReportStatus.UNREAD))
            ]
            ordered = order_worklist(wanted, now, self._targets)[:limit]
            ready = self._priors_ready(uow, ordered)
        return [
            self._entry(
                replace(i, priors_ready=ready[i.study_instance_uid]),
                statuses.get(i.study_instance_uid, ReportStatus.UNREAD),
                now,
            )
            for i in ordered
        ]

    def _priors_ready(
        self, uow: UnitOfWork, items: Sequence[ReadingItem]
    ) -> dict[Uid, bool | None]:
        keys = {i.study_instance_uid: _request_keys(i) for i in items}
        every = [k for ks in keys.values() for k in ks]
        states = uow.reading.prior_states(every)
        searching = uow.reading.unfinished_jobs([f"prefetch:{k}" for k in every])
        return {
            uid: priors_ready(
                [s for k in ks for s in states.get(k, ())],
                any(f"prefetch:{k}" in searching for k in ks),
            )
            for uid, ks in keys.items()
        }

    def _entry(self, item: ReadingItem, status: ReportStatus, now: datetime) -> ReadingEntry:
        return ReadingEntry(
            item=item,
            report_status=status,
            waiting=item.waiting(now),
            target=self._targets.for_priority(item.priority),
            is_overdue=is_overdue(item, now, self._targets),
            claim=item.active_claim(now),
            site=self._site,
        )

    def claim(self, study_uid: Uid, reader: str) -> Claim:
        """Claim a study for reader (or extend their claim); StudyClaimed when another holds it."""
        with self._uow() as uow:
            now = self._clock.now()
            self._on_worklist(uow, study_uid)
            wanted = take_claim(
                uow.reading.claim_of(study_uid), study_uid, reader, now, self._claim_duration
            )
            # Checked again by the store: a concurrent claim may have landed since the read.
            standing = uow.reading.put_claim(wanted, now)
            take_claim(standing, study_uid, reader, now, self._claim_duration)
            uow.commit()
            return standing

    def release(self, study_uid: Uid, reader: str) -> None:
        """Give a claimed study back (only its holder may); NotClaimHolder otherwise."""
        with self._uow() as uow:
            if uow.studies.get(study_uid) is None:
                raise UnknownStudy(f"no study {study_uid}")
            now = self._clock.now()
            check_release(uow.reading.claim_of(study_uid), reader, now)
            uow.reading.delete_claim(study_uid, reader)
            uow.commit()

    def set_triage_score(self, study_uid: Uid, score: float | None) -> None:
        """Record the AI triage score of a study (None clears it)."""
        if score is not None:
            check_triage_score(score)
        with self._uow() as uow:
            if not uow.reading.set_triage_score(study_uid, score):
                raise UnknownStudy(f"no study {study_uid}")
            uow.commit()

    def _on_worklist(self, uow: UnitOfWork, study_uid: Uid) -> None:
        status = uow.reports.statuses([study_uid]).get(study_uid, ReportStatus.UNREAD)
        if uow.reading.candidates([study_uid]) and not is_finally_reported(status):
            return
        study = uow.studies.get(study_uid)
        if study is None:
            raise UnknownStudy(f"no study {study_uid}")
        if study.state is not StudyState.PUBLISHED:
            raise NotOnWorklist(f"study {study_uid} is {study.state.value}, not on the worklist")
        if is_finally_reported(status):
            raise NotOnWorklist(f"study {study_uid} is finally reported")
        raise NotOnWorklist(
            f"study {study_uid} is not waiting for reading (a prior fetched from an archive)"
        )


__all__ = [
    "NotOnWorklist",
    "ReadingEntry",
    "ReadingWorklist",
    "UnknownStudy",
    "priors_ready",
]
