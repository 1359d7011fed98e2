"""Settings changes are configuration changes: each start records what changed (audited)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pacsflow.domain.audit import ActiveParticipant, EventTypes
from pacsflow.domain.audit_events import security_alert
from pacsflow.workflow.audit import AuditTrail
from pacsflow.workflow.ports.clock import Clock
from pacsflow.workflow.ports.uow import UnitOfWorkFactory


def changed_keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """The top-level settings whose values differ (added and removed ones included)."""
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


@dataclass(frozen=True, slots=True)
class SettingsRecorded:
    """What a start recorded: the node's first settings, or the keys that changed."""

    is_first_start: bool
    changed: tuple[str, ...]

    def summary(self) -> str:
        """One line for the log."""
        if self.is_first_start:
            return "first start: settings recorded"
        return "settings changed since the last start: " + ", ".join(self.changed)


def record_settings(
    uow: UnitOfWorkFactory,
    trail: AuditTrail,
    clock: Clock,
    node: str,
    current: Mapping[str, Any],
) -> SettingsRecorded | None:
    """Record the settings a node starts with; audit a change (110131) when they differ.

    `current` must already have its secrets redacted. Returns what was recorded (the changed
    keys; every key on the node's first start), None when nothing changed.
    """
    text = json.dumps(current, sort_keys=True, default=str)
    with uow() as u:
        last = u.settings_log.last(node)
        if last == text:
            return None
        before: Mapping[str, Any] = json.loads(last) if last else {}
        changed = changed_keys(before, json.loads(text))
        now = clock.now()
        u.settings_log.save(node, text, now)
        event = security_alert(
            trail.source,
            ActiveParticipant(node, user_name="pacsflow"),
            now,
            alert=EventTypes.SOFTWARE_CONFIGURATION,
            resource=f"settings of {node}",
            description=("first start: " if last is None else "changed: ") + ", ".join(changed),
        )
        u.audit.append(event, now)
        u.commit()
    trail.forward(event)
    return SettingsRecorded(is_first_start=last is None, changed=tuple(changed))


__all__ = ["SettingsRecorded", "changed_keys", "record_settings"]
