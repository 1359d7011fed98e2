"""Imaging orders."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from pacsflow.domain.orders import AccessionNumber, Order, OrderStatus, WorklistFilter
from pacsflow.domain.uids import Uid


class OrderRepository(Protocol):
    """Imaging orders."""

    def by_accession(self, accession: AccessionNumber) -> Order | None:
        """The order with this accession number."""
        ...

    def by_study_uid(self, study_uid: Uid) -> Order | None:
        """The order that reserved this Study Instance UID."""
        ...

    def save(self, order: Order, at: datetime) -> None:
        """Insert or update an order (matched by accession number)."""
        ...

    def on_worklist(self, flt: WorklistFilter | None = None) -> Sequence[Order]:
        """Orders a modality may still pick up (narrowed by the filter when given)."""
        ...

    def list(self, *, status: OrderStatus | None = None, limit: int = 100) -> Sequence[Order]:
        """Orders, newest first."""
        ...


__all__ = [
    "OrderRepository",
]
