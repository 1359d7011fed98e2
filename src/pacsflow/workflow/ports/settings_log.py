"""The settings each node started with."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class SettingsLog(Protocol):
    """The settings each node started with (secrets redacted), to record their changes."""

    def last(self, node: str) -> str | None:
        """The settings (JSON text) the node last started with."""
        ...

    def save(self, node: str, text: str, at: datetime) -> None:
        """Record the settings a node starts with."""
        ...


__all__ = [
    "SettingsLog",
]
