"""The workflow outcome events the KPIs are computed from, in SQL."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from pacsflow.adapters.db import tables as t
from pacsflow.domain.matching import ExceptionReason, MatchOutcomeKind, MismatchSource
from pacsflow.domain.orders import AccessionNumber
from pacsflow.domain.uids import Uid


class SqlEventLog:
    """Workflow outcome events in SQL."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def record_match(
        self,
        study_uid: Uid,
        kind: MatchOutcomeKind,
        at: datetime,
        reason: ExceptionReason | None = None,
        source: MismatchSource | None = None,
    ) -> None:
        """Record how a study's matching ended."""
        self._c.execute(
            sa.insert(t.match_events).values(
                study_instance_uid=study_uid,
                kind=kind.value,
                reason=reason.value if reason else None,
                source=source.value if source else None,
                at=at,
            )
        )

    def record_order_event(self, accession: AccessionNumber, event: str, at: datetime) -> None:
        """Record an order lifecycle event."""
        self._c.execute(
            sa.insert(t.order_events).values(accession_number=accession, event=event, at=at)
        )


__all__ = ["SqlEventLog"]
