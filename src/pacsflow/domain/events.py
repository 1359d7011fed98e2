"""Domain events: what happened, published inside the transaction that recorded it.

Use cases (ingest, intake, reconciliation, procedure steps) publish them; the work an event
causes (routing, prefetch, result delivery, and the coming KPIs) subscribes and enqueues it
in the same transaction, so the event and its consequences commit or roll back together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pacsflow.domain.orders import Order
from pacsflow.domain.studies import ArrivedInstance, StudyState
from pacsflow.domain.uids import Uid


@dataclass(frozen=True, slots=True)
class InstanceStored:
    """An instance was stored and indexed; state is its study's state as the ingest left it.

    Not published for a rejection note (a control object causes no routing or delivery).
    """

    stored: ArrivedInstance
    state: StudyState
    at: datetime

    @property
    def study_uid(self) -> Uid:
        """The Study Instance UID of the stored instance."""
        return self.stored.instance.study_instance_uid


@dataclass(frozen=True, slots=True)
class StudyPublished:
    """A held study was published (reconciliation or a late match)."""

    study_uid: Uid
    at: datetime


@dataclass(frozen=True, slots=True)
class OrderPlaced:
    """A new scheduled order was recorded (not a repeated NW of a known order)."""

    order: Order
    at: datetime


@dataclass(frozen=True, slots=True)
class ProcedureCompleted:
    """A performed procedure step of a study was completed (MPPS COMPLETED)."""

    study_uid: Uid
    at: datetime


#: Every domain event.
Event = InstanceStored | StudyPublished | OrderPlaced | ProcedureCompleted

__all__ = ["Event", "InstanceStored", "OrderPlaced", "ProcedureCompleted", "StudyPublished"]
