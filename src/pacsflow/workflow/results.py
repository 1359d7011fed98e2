"""The result rail: reports in, attached to their studies, and results out to subscribers.

A report version (ORU^R01 or the HTTP API) is kept whatever happens. It attaches to its
study by Study Instance UID, else by accession number, once that study is published; for a
study not here yet or held in the exceptions queue it is kept, flagged, and attaches when the
study is stored and published. Each attached version is queued for every subscriber that
wants its status, as a durable job whose ordering key keeps one study's messages in order;
"images available" is queued once when a study is first published, for subscribers that
want it. Deliveries record when they were queued and settled, so the share delivered within
the subscriber's target time can be reported.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pacsflow.domain.errors import PermanentError
from pacsflow.domain.events import InstanceStored, StudyPublished
from pacsflow.domain.jobs import Job, NewJob
from pacsflow.domain.orders import AccessionNumber, Order
from pacsflow.domain.patients import Patient
from pacsflow.domain.reports import DeliveryState, DeliveryStats, Report, ReportRecord, ReportStatus
from pacsflow.domain.studies import StudyFilter, StudyRecord, StudyState
from pacsflow.domain.uids import Uid
from pacsflow.workflow.events import EventBus
from pacsflow.workflow.ports.clock import Clock
from pacsflow.workflow.ports.uow import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger(__name__)

DELIVER_RESULT_JOB = "deliver_result"
EVENT_REPORT = "report"
EVENT_IMAGES = "images_available"

FLAG_NO_STUDY = "no study with this accession number or Study Instance UID yet"
FLAG_HELD = "the study is held in the exceptions queue"


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A system that wants results: which events and which report statuses."""

    name: str
    wants_reports: bool = True
    wants_images_available: bool = False
    statuses: frozenset[ReportStatus] = frozenset(
        {
            ReportStatus.PRELIMINARY,
            ReportStatus.FINAL,
            ReportStatus.CORRECTED,
            ReportStatus.CANCELLED,
        }
    )
    target_seconds: float = 300.0


@dataclass(frozen=True, slots=True)
class ResultMessage:
    """What one delivery says, in domain terms (the HL7 adapter writes it)."""

    delivery_id: int
    event: str
    study: StudyRecord
    report: Report | None = None
    patient: Patient | None = None
    order: Order | None = None


class ResultSender(Protocol):
    """Sends a result message to a subscriber and waits for its acknowledgement."""

    def send(self, subscriber: str, message: ResultMessage) -> str:
        """The acknowledgement code when accepted (AA/CA).

        Raises PermanentError when refused (AE/AR: the reason in the message) and
        TransientError when the subscriber is down or does not answer.
        """
        ...


class Results:
    """Reports in and results out."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        subscribers: Sequence[Subscriber],
        sender: ResultSender,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._subscribers = {s.name: s for s in subscribers}
        self._sender = sender

    # -- reports in -------------------------------------------------------------------------

    def receive(self, report: Report, source: str) -> ReportRecord:
        """Keep a report version from the API; attach it when its study is published."""
        with self._uow() as uow:
            report_id = self.record(uow, report, source, self._clock.now())
            uow.commit()
            found = uow.reports.get(report_id)
        assert found is not None
        return found

    def record(self, uow: UnitOfWork, report: Report, source: str, now: datetime) -> int:
        """Keep a report version inside the caller's transaction (HL7 intake); its id."""
        study = _study_of(uow, report)
        if study is None or study.state is not StudyState.PUBLISHED:
            flag = FLAG_HELD if study is not None else FLAG_NO_STUDY
            report_id = uow.reports.add(report, now, source, flag)
            log.info("report %d kept unattached: %s", report_id, flag)
            return report_id
        report_id = uow.reports.add(report, now, source)
        self._attach(uow, report_id, report, study.study_instance_uid, now)
        return report_id

    def subscribe_to(self, bus: EventBus) -> None:
        """Attach waiting reports and say "images available" when studies are published."""
        bus.subscribe(InstanceStored, self.on_stored)
        bus.subscribe(StudyPublished, self.on_published)

    def on_stored(self, uow: UnitOfWork, events: Sequence[InstanceStored]) -> None:
        """Stored instances: see on_published; once per published study and batch."""
        seen: set[Uid] = set()
        for event in events:
            # The study's state as the ingest just indexed it.
            if event.state is StudyState.PUBLISHED and event.study_uid not in seen:
                seen.add(event.study_uid)
                self._for_published(uow, event.study_uid, event.at)

    def on_published(self, uow: UnitOfWork, events: Sequence[StudyPublished]) -> None:
        """Published studies get their waiting reports and, once, "images available"."""
        for event in events:
            study = uow.studies.head(event.study_uid)
            if study is not None and study.state is StudyState.PUBLISHED:
                self._for_published(uow, event.study_uid, event.at)

    def _for_published(self, uow: UnitOfWork, study_uid: Uid, now: datetime) -> None:
        for waiting in uow.reports.unattached_for(study_uid):
            self._attach(uow, waiting.id, waiting.report, study_uid, now)
        for sub in self._subscribers.values():
            if not sub.wants_images_available:
                continue
            if uow.reports.has_delivery(sub.name, EVENT_IMAGES, study_uid):
                continue  # once per study
            delivery = uow.reports.add_delivery(sub.name, EVENT_IMAGES, study_uid, None, now)
            key = _ordering_key(sub.name, study_uid)
            uow.jobs.enqueue(_delivery_job(sub.name, delivery, EVENT_IMAGES, study_uid, key), now)

    def _attach(
        self, uow: UnitOfWork, report_id: int, report: Report, study_uid: Uid, now: datetime
    ) -> None:
        uow.reports.attach(report_id, study_uid)
        for sub in self._subscribers.values():
            if not sub.wants_reports or report.status not in sub.statuses:
                continue
            delivery = uow.reports.add_delivery(sub.name, EVENT_REPORT, study_uid, report_id, now)
            uow.jobs.enqueue(
                _delivery_job(
                    sub.name,
                    delivery,
                    EVENT_REPORT,
                    study_uid,
                    _ordering_key(sub.name, study_uid),
                    report=report_id,
                ),
                now,
            )

    # -- results out ----------------------------------------------------------------------------

    def deliver(self, job: Job) -> None:
        """The deliver_result job: send one message to one subscriber."""
        p = job.payload
        delivery_id = int(p["delivery"])
        subscriber = str(p["subscriber"])
        with self._uow(read_only=True) as uow:
            study = uow.studies.get(Uid(str(p["study_uid"])))
            if study is None:
                raise PermanentError(f"study {p['study_uid']} is no longer indexed")
            report_record = uow.reports.get(int(p["report"])) if p.get("report") else None
            patient = uow.patients.find(study.patient) if study.patient else None
            order = (
                uow.orders.by_accession(AccessionNumber(study.accession_number))
                if study.accession_number
                else None
            )
        message = ResultMessage(
            delivery_id=delivery_id,
            event=str(p["event"]),
            study=study,
            report=report_record.report if report_record else None,
            patient=patient,
            order=order,
        )
        try:
            code = self._sender.send(subscriber, message)
        except PermanentError as exc:  # refused (AE/AR): failed, until replayed
            self._settle(delivery_id, DeliveryState.FAILED, "", f"{type(exc).__name__}: {exc}")
            raise
        except Exception as exc:  # down or silent: still pending, retried with backoff
            self._settle(delivery_id, DeliveryState.QUEUED, "", f"{type(exc).__name__}: {exc}")
            raise
        self._settle(delivery_id, DeliveryState.DELIVERED, code, "")

    def _settle(self, delivery_id: int, state: DeliveryState, code: str, error: str) -> None:
        with self._uow() as uow:
            uow.reports.settle_delivery(delivery_id, state, self._clock.now(), code, error)
            uow.commit()

    # -- views ----------------------------------------------------------------------------------

    def reports_of(self, study_uid: Uid) -> list[ReportRecord]:
        """A study's report versions, oldest first."""
        with self._uow(read_only=True) as uow:
            return list(uow.reports.for_study(study_uid))

    def reports(self, *, unattached_only: bool = False, limit: int = 100) -> list[ReportRecord]:
        """Report versions, newest first (only the flagged, unattached ones on request)."""
        with self._uow(read_only=True) as uow:
            return list(uow.reports.list(unattached_only=unattached_only, limit=limit))

    def status_of(self, study_uid: Uid) -> ReportStatus:
        """A study's report status."""
        with self._uow(read_only=True) as uow:
            return uow.reports.statuses([study_uid])[study_uid]

    def delivery_stats(self) -> list[DeliveryStats]:
        """Per subscriber: delivered, delivered within target, failed, pending."""
        with self._uow(read_only=True) as uow:
            return [
                uow.reports.delivery_stats(s.name, s.target_seconds)
                for s in self._subscribers.values()
            ]


def _ordering_key(subscriber: str, study_uid: Uid) -> str:
    return f"result:{subscriber}:{study_uid}"


def _delivery_job(
    subscriber: str, delivery: int, event: str, study_uid: Uid, key: str, report: int = 0
) -> NewJob:
    return NewJob(
        DELIVER_RESULT_JOB,
        {
            "delivery": delivery,
            "subscriber": subscriber,
            "event": event,
            "study_uid": study_uid,
            "report": report,
        },
        destination=subscriber,
        ordering_key=key,
    )


def _study_of(uow: UnitOfWork, report: Report) -> StudyRecord | None:
    """The study a report belongs to: by Study Instance UID, else by accession number."""
    if report.study_instance_uid:
        found = uow.studies.get(Uid(report.study_instance_uid))
        if found is not None:
            return found
    if report.accession_number:
        matches = uow.studies.find(
            StudyFilter(accession_number=report.accession_number, is_published_only=False, limit=10)
        )
        published = [s for s in matches if s.state is StudyState.PUBLISHED]
        candidates = published or list(matches)
        return candidates[0] if candidates else None
    return None


__all__ = [
    "DELIVER_RESULT_JOB",
    "EVENT_IMAGES",
    "EVENT_REPORT",
    "ResultMessage",
    "ResultSender",
    "Results",
    "Subscriber",
]
