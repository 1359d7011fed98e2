"""The operator alert for objects refused because no space is left to store them.

Recorded in the alert list the routing-loop alerts use (GET /api/alerts): kind
`storage_full`, one row per sending AE, its count one more per refused object. When the
database itself has no space left the alert cannot be written either: it is kept in memory,
logged as critical, and written with the next refusal or the next object stored.
"""

from __future__ import annotations

import logging
import threading

from pacsflow.domain.errors import PacsflowError
from pacsflow.workflow.ports.clock import Clock
from pacsflow.workflow.ports.uow import UnitOfWorkFactory

log = logging.getLogger(__name__)

#: The alert kind and subject of an object refused for lack of space.
STORAGE_FULL = "storage_full"
SUBJECT = "object storage"


class StorageAlarm:
    """Raises the storage_full alert; keeps what it could not record until it can."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock
        self._lock = threading.Lock()
        #: Refusals not yet recorded: sending AE -> (last detail, count).
        self._pending: dict[str, tuple[str, int]] = {}

    def refused(self, peer: str, detail: str) -> None:
        """An object from peer was refused for lack of space: alert the operator."""
        log.error("object from %s refused, no space left: %s", peer or "an unnamed AE", detail)
        with self._lock:
            _, count = self._pending.get(peer, ("", 0))
            self._pending[peer] = (detail, count + 1)
        self.flush()

    def flush(self) -> None:
        """Record the refusals not recorded yet (nothing to do, the usual case, costs nothing)."""
        if not self._pending:
            return
        with self._lock:
            taken, self._pending = self._pending, {}
        try:
            with self._uow() as uow:
                now = self._clock.now()
                for peer, (detail, count) in taken.items():
                    for _ in range(count):
                        uow.routing.raise_alert(STORAGE_FULL, SUBJECT, peer, detail, now)
                uow.commit()
        except PacsflowError as exc:
            log.critical("no space left, and the storage_full alert cannot be recorded: %s", exc)
            with self._lock:
                for peer, (detail, count) in taken.items():
                    latest, later = self._pending.get(peer, (detail, 0))
                    self._pending[peer] = (latest, count + later)


__all__ = ["STORAGE_FULL", "SUBJECT", "StorageAlarm"]
