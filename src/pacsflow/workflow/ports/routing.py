"""Routing rule versions, forwards and alerts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from pacsflow.domain.routing import (
    Activation,
    Alert,
    ForwardRecord,
    ForwardState,
    RuleSet,
    RuleVersion,
)
from pacsflow.domain.studies import InstanceRecord
from pacsflow.domain.uids import Uid


class RoutingStore(Protocol):
    """Versioned routing rules, which version is active, and what was forwarded where."""

    def add_version(self, text: str, author: str, comment: str, at: datetime) -> int:
        """Save a new version of the rules; its number."""
        ...

    def version(self, number: int) -> RuleVersion | None:
        """One version."""
        ...

    def versions(self) -> Sequence[RuleVersion]:
        """Every version, newest first."""
        ...

    def activate(self, number: int, actor: str, at: datetime) -> None:
        """Make a version the active one."""
        ...

    def active_version(self) -> int | None:
        """The number of the active version (the latest activated), if any."""
        ...

    def activations(self, limit: int = 100) -> Sequence[Activation]:
        """Activations, newest first (the first is the active version)."""
        ...

    def queue_forward(
        self, instance: InstanceRecord, destination: str, rule_version: int, at: datetime
    ) -> bool:
        """Record that this content of the instance goes to destination; False if it already
        was (each instance goes to a destination once per version of its content)."""
        ...

    def settle_forward(
        self, sop_uid: Uid, destination: str, state: ForwardState, at: datetime, error: str = ""
    ) -> None:
        """Record how sending one instance to a destination ended."""
        ...

    def forwards(self, study_uid: Uid) -> Sequence[ForwardRecord]:
        """What was forwarded where for a study."""
        ...

    def pending_forwards(self, destination: str, limit: int) -> Sequence[ForwardRecord]:
        """Forwards still queued for a destination, oldest first."""
        ...

    def sent_to(self, sop_uid: Uid) -> Sequence[str]:
        """The destinations the instance was sent to."""
        ...

    def raise_alert(self, kind: str, subject: str, peer: str, detail: str, at: datetime) -> None:
        """Record an alert, or count one more occurrence of the same kind/subject/peer."""
        ...

    def alerts(self, limit: int = 100) -> Sequence[Alert]:
        """Alerts, most recent first."""
        ...


class RuleText(Protocol):
    """The text form of a rule set (YAML at the edge; the domain takes plain data)."""

    def parse(self, text: str, *, is_keyword: Callable[[str], bool] | None = None) -> RuleSet:
        """Read a rule set; InvalidInput names the rule and the problem."""
        ...

    def diff(self, old_text: str, new_text: str, *, old_label: str, new_label: str) -> str:
        """A unified diff of two rule sets in canonical form; empty when they are the same."""
        ...


__all__ = [
    "RoutingStore",
    "RuleText",
]
