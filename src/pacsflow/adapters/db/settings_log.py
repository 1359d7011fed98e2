"""The settings each node started with, append-only, in SQL."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from pacsflow.adapters.db import tables as t

_S = t.settings_log


class SqlSettingsLog:
    """Settings history over one connection, inside the caller's transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def last(self, node: str) -> str | None:
        """The settings (JSON text) the node last started with."""
        row = self._c.execute(
            sa.select(_S.c.text).where(_S.c.node == node).order_by(_S.c.pk.desc()).limit(1)
        ).first()
        return str(row.text) if row else None

    def save(self, node: str, text: str, at: datetime) -> None:
        """Record the settings a node starts with."""
        self._c.execute(sa.insert(_S).values(node=node, text=text, at=at.astimezone(UTC)))


__all__ = ["SqlSettingsLog"]
