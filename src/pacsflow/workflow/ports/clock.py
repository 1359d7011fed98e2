"""The clock every use case reads the time from."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Clock(Protocol):
    """Tells the time (UTC, timezone-aware)."""

    def now(self) -> datetime:
        """The current time."""
        ...


__all__ = [
    "Clock",
]
