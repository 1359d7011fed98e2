"""Datetimes in and out of the database: stored in UTC, read back timezone-aware."""

from __future__ import annotations

from datetime import UTC, datetime


def utc(value: datetime) -> datetime:
    """UTC, so SQLite's offset-less text compares in time order."""
    return value.astimezone(UTC)


def aware(value: datetime) -> datetime:
    """A datetime from the database as UTC-aware (SQLite drops the offset)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def aware_or_none(value: datetime | None) -> datetime | None:
    """aware() for a nullable column."""
    return None if value is None else aware(value)


__all__ = ["aware", "aware_or_none", "utc"]
