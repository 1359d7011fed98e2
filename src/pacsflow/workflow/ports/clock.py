"""The clock every use case reads the time from, and the site's time zone."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Protocol


class Clock(Protocol):
    """Tells the time (UTC, timezone-aware) and the zone the site's days are counted in."""

    @property
    def zone(self) -> tzinfo:
        """The site time zone: every day boundary (today, a date's span) is computed in it."""
        ...

    def now(self) -> datetime:
        """The current time."""
        ...


__all__ = [
    "Clock",
]
