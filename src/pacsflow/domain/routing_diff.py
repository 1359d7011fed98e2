"""Dry runs: where the active and a candidate rule set would each send recent studies."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pacsflow.domain.routing import RuleSet, Trigger, destinations_for
from pacsflow.domain.routing_conditions import RoutingContext


@dataclass(frozen=True, slots=True)
class RouteDifference:
    """Where one study goes under the active and under the candidate rule set."""

    key: str
    active: frozenset[str]
    candidate: frozenset[str]

    @property
    def added(self) -> frozenset[str]:
        """Destinations only the candidate sends to."""
        return self.candidate - self.active

    @property
    def removed(self) -> frozenset[str]:
        """Destinations only the active set sends to."""
        return self.active - self.candidate

    @property
    def changed(self) -> bool:
        """True when the two sets route the study differently."""
        return self.active != self.candidate


def dry_run(
    active: RuleSet,
    candidate: RuleSet,
    items: Iterable[tuple[str, RoutingContext]],
    trigger: Trigger | None = None,
) -> list[RouteDifference]:
    """Per item (keyed by study UID), where each set routes it; None means both triggers."""
    triggers = tuple(Trigger) if trigger is None else (trigger,)

    def route(rules: RuleSet, ctx: RoutingContext) -> frozenset[str]:
        return frozenset().union(*(destinations_for(rules, ctx, t) for t in triggers))

    return [RouteDifference(key, route(active, ctx), route(candidate, ctx)) for key, ctx in items]


__all__ = [
    "RouteDifference",
    "dry_run",
]
