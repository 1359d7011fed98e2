"""Days of the site: which day an instant falls on and which instants a day spans.

An instant is stored and compared in UTC; a day ("today", a report's day, a worklist date,
a routing schedule) is the site's, in its time zone (the Clock's `zone`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo


def local_day(at: datetime, zone: tzinfo) -> date:
    """The site's date at this instant."""
    return at.astimezone(zone).date()


def local_time(at: datetime, zone: tzinfo) -> datetime:
    """This instant on the site's wall clock."""
    return at.astimezone(zone)


def day_start(day: date, zone: tzinfo) -> datetime:
    """The instant (UTC) the site's day begins."""
    return datetime.combine(day, time(), zone).astimezone(UTC)


def day_span(first: date, last: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """The instants (UTC) from the start of the site's first day to the end of its last one,
    end exclusive."""
    return day_start(first, zone), day_start(last + timedelta(days=1), zone)


__all__ = ["day_span", "day_start", "local_day", "local_time"]
