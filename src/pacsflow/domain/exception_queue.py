"""Running the exceptions queue: time targets per reason, what is overdue, the daily report.

The report is computed from the recorded history of each exception (when it was opened,
which actions resolved it and when they were undone, how it is resolved now), so that the
state at the end of a past day is reconstructed exactly rather than read from today's state.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from typing import Any

from pacsflow.domain.matching import ExceptionReason, MismatchSource, ReceivedIdentity
from pacsflow.domain.orders import AccessionNumber
from pacsflow.domain.uids import Uid

#: The reconciliation action that names who works an exception (it resolves nothing).
ASSIGN_OWNER = "assign_owner"
#: How an exception is closed when a late order or registration explains it.
LATE_MATCH = "late_match"
#: Corrected identifiers that match now: the study is published, its exception resolved.
CORRECT = "correct"
#: Corrected identifiers that still do not match: the exception stays open, with its new reason.
CORRECT_HELD = "correct_held"
#: A series moved to another study (the source's exception, if any, stays open).
SPLIT = "split"
#: Actions that leave the exception they are recorded on open.
NON_RESOLVING = frozenset({ASSIGN_OWNER, CORRECT_HELD, SPLIT})

_HOUR = timedelta(hours=1)

#: Time to resolution per reason. Wrong-patient-like reasons (images that may sit under,
#: or be about to join, another patient's record) and images that name no patient get one
#: hour; the rest four hours, since a late order or registration often resolves them by
#: itself (docs/matching.md).
DEFAULT_TARGETS: Mapping[ExceptionReason, timedelta] = {
    ExceptionReason.PATIENT_ORDER_MISMATCH: _HOUR,
    ExceptionReason.DEMOGRAPHICS_DIFFER: _HOUR,
    ExceptionReason.STUDY_INCONSISTENT: _HOUR,
    ExceptionReason.MISSING_PATIENT_ID: _HOUR,
    ExceptionReason.NO_ORDER: 4 * _HOUR,
    ExceptionReason.UNKNOWN_ACCESSION: 4 * _HOUR,
    ExceptionReason.UNKNOWN_PATIENT: 4 * _HOUR,
    ExceptionReason.ORDER_NOT_SCHEDULED: 4 * _HOUR,
}

#: Report columns by reconciliation action (other action names are counted as `other`).
_ACTION_COLUMNS = {
    "match_to_order": "matched",
    "assign_to_patient": "assigned",
    "reject": "rejected",
}


def targets(
    overrides: Mapping[ExceptionReason, timedelta] | None = None,
) -> dict[ExceptionReason, timedelta]:
    """The target per reason: the defaults, with the configured ones instead where given."""
    return {**DEFAULT_TARGETS, **(overrides or {})}


def is_overdue(
    opened_at: datetime,
    reason: ExceptionReason,
    now: datetime,
    per_reason: Mapping[ExceptionReason, timedelta],
) -> bool:
    """True when an open exception has waited longer than its reason's target."""
    return now - opened_at > per_reason.get(reason, DEFAULT_TARGETS[reason])


def queue_key(is_late: bool, opened_at: datetime, exception_id: int) -> tuple[bool, datetime, int]:
    """Sort key of the queue: overdue first, then oldest first."""
    return (not is_late, opened_at, exception_id)


@dataclass(frozen=True, slots=True)
class ActionFact:
    """A recorded reconciliation action on an exception: what, when, and when undone."""

    action: str
    at: datetime
    undone_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ExceptionHistory:
    """An exception as recorded: opened, its actions, and how it stands now."""

    id: int
    reason: ExceptionReason
    source: MismatchSource
    opened_at: datetime
    resolved_at: datetime | None = None
    resolution: str = ""
    actions: tuple[ActionFact, ...] = ()


def resolution_as_of(history: ExceptionHistory, moment: datetime) -> tuple[datetime, str] | None:
    """When and how the exception stood resolved just before moment; None when open then.

    Only an undo reopens an exception, so the present resolution (when older than moment)
    still held then; otherwise a resolving action before moment that was not undone by then
    did.
    """
    found: list[tuple[datetime, str]] = []
    if history.resolved_at is not None and history.resolved_at < moment:
        found.append((history.resolved_at, history.resolution))
    found.extend(
        (a.at, a.action)
        for a in history.actions
        if a.action not in NON_RESOLVING
        and a.at < moment
        and (a.undone_at is None or a.undone_at >= moment)
    )
    return max(found) if found else None


def percentile(values: Iterable[float], fraction: float) -> float | None:
    """The nearest-rank percentile (fraction 0..1) of values; None when there are none."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class ReportRow:
    """The day's figures for one reason and mismatch source (or for all: `all`)."""

    reason: str
    source: str
    opened: int = 0
    resolved: int = 0
    matched: int = 0
    assigned: int = 0
    rejected: int = 0
    undone: int = 0
    late_matched: int = 0
    other_actions: int = 0
    open_at_end: int = 0
    overdue_at_end: int = 0
    median_seconds: float | None = None
    p90_seconds: float | None = None

    def as_dict(self) -> dict[str, str | int | float | None]:
        """The row's figures by column name, in the order of REPORT_COLUMNS."""
        return {name: getattr(self, name) for name in REPORT_COLUMNS}


#: The report's columns, in order (the CSV header).
REPORT_COLUMNS = tuple(f.name for f in fields(ReportRow))
_COUNTS = REPORT_COLUMNS[2:-2]


@dataclass(frozen=True, slots=True)
class DailyReport:
    """The exceptions queue over one day: a row per reason and source, and the total."""

    day: date
    start: datetime
    end: datetime
    rows: tuple[ReportRow, ...]
    total: ReportRow

    def as_dict(self) -> dict[str, Any]:
        """The report as plain values (dates in ISO 8601), as the JSON form shows it."""
        return {
            "day": self.day.isoformat(),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "total": self.total.as_dict(),
            "rows": [r.as_dict() for r in self.rows],
        }

    def as_csv(self) -> str:
        """The report as CSV: a header, a row per reason and source, then the `all` row."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(REPORT_COLUMNS)
        for r in (*self.rows, self.total):
            writer.writerow(["" if v is None else v for v in r.as_dict().values()])
        return out.getvalue()


@dataclass(slots=True)
class _Tally:
    counts: Counter[str] = field(default_factory=Counter)
    waits: list[float] = field(default_factory=list)

    def row(self, reason: str, source: str) -> ReportRow:
        median = float(statistics.median(self.waits)) if self.waits else None
        return ReportRow(
            reason,
            source,
            **{name: self.counts[name] for name in _COUNTS},
            median_seconds=median,
            p90_seconds=percentile(self.waits, 0.9),
        )


def daily_report(
    day: date,
    start: datetime,
    end: datetime,
    histories: Iterable[ExceptionHistory],
    per_reason: Mapping[ExceptionReason, timedelta],
) -> DailyReport:
    """Count what happened in [start, end): opened, resolved (as the day ended), actions,
    time to resolution (median, p90), open and overdue at end.

    `end` is the end of the day, or now for the day in progress. An exception resolved and
    undone within the day counts its actions but is not resolved.
    """
    tallies: dict[tuple[str, str], _Tally] = {}
    total = _Tally()

    def tally(h: ExceptionHistory) -> _Tally:
        return tallies.setdefault((h.reason.value, h.source.value), _Tally())

    def add(h: ExceptionHistory, column: str) -> None:
        tally(h).counts[column] += 1
        total.counts[column] += 1

    for h in histories:
        if h.opened_at >= end:
            continue
        if start <= h.opened_at:
            add(h, "opened")
        for action in h.actions:
            if action.action == ASSIGN_OWNER:
                continue
            if start <= action.at < end:
                add(h, _ACTION_COLUMNS.get(action.action, "other_actions"))
            if action.undone_at is not None and start <= action.undone_at < end:
                add(h, "undone")
        resolved = resolution_as_of(h, end)
        if resolved is None:
            add(h, "open_at_end")
            if is_overdue(h.opened_at, h.reason, end, per_reason):
                add(h, "overdue_at_end")
            continue
        at, how = resolved
        if at < start:
            continue
        add(h, "resolved")
        if how == LATE_MATCH:
            add(h, "late_matched")
        waited = (at - h.opened_at).total_seconds()
        tally(h).waits.append(waited)
        total.waits.append(waited)
    rows = tuple(tallies[key].row(*key) for key in sorted(tallies))
    return DailyReport(day, start, end, rows, total.row("all", "all"))


@dataclass(frozen=True, slots=True)
class HoldReason:
    """Why an exception holds its study, and the identity that was matched (undo restores it)."""

    reason: ExceptionReason
    source: MismatchSource
    detail: str
    received: ReceivedIdentity
    candidate_order: AccessionNumber | None = None


@dataclass(frozen=True, slots=True)
class ExceptionRecord:
    """A study held for reconciliation."""

    id: int
    study_instance_uid: Uid
    reason: ExceptionReason
    source: MismatchSource
    detail: str
    opened_at: datetime
    received: ReceivedIdentity
    candidate_order: AccessionNumber | None = None
    resolved_at: datetime | None = None
    resolution: str = ""
    owner: str = ""  # the username working it; empty: nobody yet


__all__ = [
    "ASSIGN_OWNER",
    "CORRECT",
    "CORRECT_HELD",
    "DEFAULT_TARGETS",
    "LATE_MATCH",
    "NON_RESOLVING",
    "REPORT_COLUMNS",
    "SPLIT",
    "ActionFact",
    "DailyReport",
    "ExceptionHistory",
    "ExceptionRecord",
    "HoldReason",
    "ReportRow",
    "daily_report",
    "is_overdue",
    "percentile",
    "queue_key",
    "resolution_as_of",
    "targets",
]
