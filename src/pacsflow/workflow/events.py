"""Publish and subscribe to domain events, synchronously, inside the publisher's transaction.

A use case publishes what happened through the unit of work it is writing in; each
subscriber's handler receives that unit of work, so the work it enqueues commits (or rolls
back) with the event. Handlers take a batch: the events of one kind published together (the
instances of one group-commit round), so a subscriber reads a study-level fact once per
batch, not once per instance. Dispatch is an explicit table: event kind -> handlers, in the
order they subscribed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar, cast

from pacsflow.domain.events import Event
from pacsflow.workflow.ports.uow import UnitOfWork

E = TypeVar("E", bound=Event)

#: Handles a batch of events of one kind in the publisher's transaction (never commits).
Handler = Callable[[UnitOfWork, Sequence[E]], None]


class EventBus:
    """The dispatch table from event kind to the handlers subscribed to it."""

    def __init__(self) -> None:
        self._handlers: dict[type[Event], list[Handler[Event]]] = {}

    def subscribe(self, kind: type[E], handler: Handler[E]) -> None:
        """Call handler with every batch of events of this kind, after earlier subscribers."""
        # Safe: publish hands a handler only the events of the kind it subscribed to.
        handlers = self._handlers.setdefault(cast("type[Event]", kind), [])
        handlers.append(cast("Handler[Event]", handler))

    def publish(self, uow: UnitOfWork, events: Sequence[Event]) -> None:
        """Hand each subscriber the events of its kind, in publishing order, within uow."""
        by_kind: dict[type[Event], list[Event]] = {}
        for event in events:
            by_kind.setdefault(type(event), []).append(event)
        for kind, batch in by_kind.items():
            for handler in self._handlers.get(kind, ()):
                handler(uow, batch)


__all__ = ["EventBus", "Handler"]
