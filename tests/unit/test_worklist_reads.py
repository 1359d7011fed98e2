"""The worklist read: one pass over the orders, their patients loaded together (no N+1)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from pacsflow.domain.orders import Order
from pacsflow.domain.patients import Patient
from pacsflow.workflow.queries import Queries
from tests import factories as f
from tests.fakes import InMemoryBlobStore, memory_uow

_AT = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def _schedule(uow, count: int) -> list[tuple[Order, Patient]]:
    placed = []
    with uow() as w:
        for _ in range(count):
            p = f.patient()
            o = f.order(p)
            w.patients.save(p, _AT)
            w.orders.save(o, _AT)
            placed.append((o, p))
        w.commit()
    return placed


def _statements_of(uow, read) -> int:
    seen = []

    def count(*_args: object) -> None:
        seen.append(1)

    sa.event.listen(uow.engine, "before_cursor_execute", count)
    try:
        read()
    finally:
        sa.event.remove(uow.engine, "before_cursor_execute", count)
    return len(seen)


def test_worklist_of_fifty_orders_takes_as_many_statements_as_one():
    uow = memory_uow()
    queries = Queries(uow, InMemoryBlobStore())
    _schedule(uow, 1)
    one = _statements_of(uow, queries.worklist)
    _schedule(uow, 49)

    fifty = _statements_of(uow, queries.worklist)

    assert len(queries.worklist()) == 50
    assert fifty == one


def test_worklist_patients_are_those_a_lookup_by_identifier_finds():
    uow = memory_uow()
    placed = _schedule(uow, 3)
    a, b = placed[0][1], placed[1][1]
    with uow() as w:
        w.patients.link(a.primary, b.primary, _AT)  # A24: one person, both identifier sets
        w.commit()

    items = Queries(uow, InMemoryBlobStore()).worklist()

    with uow(read_only=True) as w:
        expected = {o.accession_number: w.patients.find(o.patient) for o, _ in placed}
    assert {i.order.accession_number: i.patient for i in items} == expected
    linked = expected[placed[0][0].accession_number]
    assert linked is not None
    assert linked.identifiers == (
        *a.identifiers,
        *b.identifiers,
    )
