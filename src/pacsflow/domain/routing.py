"""Routing rules: which destinations an arriving instance or a stable study is sent to.

A rule set is written in YAML (JSON is accepted too, being YAML)::

    rules:
      - name: ct-to-archive
        description: CT studies from the main campus go to the long-term archive
        trigger: instance                   # or study_stable; default instance
        when:                               # all conditions hold (AND); omit for "always"
          Modality: {in: [CT, PT]}
          BodyPartExamined: {exists: true}
          StudyDescription: {wildcard: "*HEAD*"}
          InstitutionName: {regex: "^Main"}
          SliceThickness: {range: [0.5, 2.0]}
          calling_ae: {equals: CT_SCANNER_1}
          time_of_day: {range: ["22:00", "06:00"]}
          priority: [STAT, ASAP]
        send_to: [ORTHANC, STOW_ARCHIVE]
        enabled: true                       # default true

Fields are DICOM keywords (CamelCase, e.g. ``Modality``) or the context fields
``calling_ae``, ``called_ae``, ``site``, ``priority``, ``procedure_code``, ``time_of_day``.
A DICOM attribute may hold several values (``ModalitiesInStudy``); a condition holds when
any value satisfies it. Values are compared after stripping DICOM padding (surrounding
spaces, NUL); empty values count as absent.

Operators:

- ``equals: X`` (shorthand ``Field: X``): exact, case-sensitive.
- ``in: [X, Y]`` (shorthand ``Field: [X, Y]``): equals one of them, case-sensitive.
- ``wildcard: "*HEAD?"``: DICOM-style ``*`` (any run) and ``?`` (one character), matched
  against the whole value, case-insensitive.
- ``regex: "^Main"``: Python ``re.search`` (anchor with ``^``/``$`` for a whole-value match),
  case-sensitive unless the pattern says ``(?i)``. Patterns are compiled when the rules are
  parsed; longer than 256 characters, or a repeated group that itself repeats (``(a+)+``),
  is refused; only the first 1024 characters of a value are searched.
- ``range: [low, high]``: inclusive; ``null`` leaves an end open. Numbers compare
  numerically (a value that is not a number does not match); quoted text compares
  lexicographically (DA ``"20240101"``, TM ``"0800"``). On ``time_of_day`` the ends are
  ``"HH:MM"`` or ``"HH:MM:SS"``, compared to the end's precision (``"18:00"`` includes
  18:00:59), and a range whose start is after its end wraps midnight (22:00-06:00).
- ``exists: true|false``: a non-empty value is present / absent or empty.

``time_of_day`` takes only ``range`` and ``exists``.

The domain takes a rule set as plain data (``Rule``, ``Condition``; their constructors check
everything the text could get wrong); the YAML text is read and written at the edge, by
``pacsflow.adapters.routing_yaml``.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass

from pacsflow.domain.errors import InvalidInput
from pacsflow.domain.routing_conditions import Condition, RoutingContext, is_text_clean, unpad
from pacsflow.domain.uids import Uid


class Trigger(enum.StrEnum):
    """When a rule is evaluated: on each arriving instance, or once a study is stable."""

    INSTANCE = "instance"
    STUDY_STABLE = "study_stable"


@dataclass(frozen=True, slots=True)
class Rule:
    """Send what matches every condition to each destination, at the rule's trigger."""

    name: str
    conditions: tuple[Condition, ...]
    destinations: tuple[str, ...]
    trigger: Trigger = Trigger.INSTANCE
    enabled: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or self.name != unpad(self.name):
            raise InvalidInput(f"a rule needs a name without surrounding spaces: {self.name!r}")
        if not is_text_clean(self.name):
            raise InvalidInput(f"rule name {self.name!r} holds control characters")
        try:
            object.__setattr__(self, "trigger", Trigger(self.trigger))
        except ValueError:
            raise InvalidInput(
                f"unknown trigger {self.trigger!r} (expected one of {', '.join(Trigger)})"
            ) from None
        if not isinstance(self.enabled, bool):
            raise InvalidInput(f"enabled must be true or false, not {self.enabled!r}")
        if not isinstance(self.description, str):
            raise InvalidInput(f"description must be text, not {self.description!r}")
        object.__setattr__(self, "conditions", tuple(self.conditions))
        object.__setattr__(self, "destinations", tuple(self.destinations))
        fields = [c.field for c in self.conditions]
        if len(set(fields)) != len(fields):
            twice = sorted({f for f in fields if fields.count(f) > 1})
            raise InvalidInput(f"more than one condition on {', '.join(twice)}")
        if not self.destinations:
            raise InvalidInput("send_to needs at least one destination")
        for destination in self.destinations:
            if (
                not isinstance(destination, str)
                or not destination
                or destination != unpad(destination)
                or not is_text_clean(destination)
            ):
                raise InvalidInput(f"invalid destination {destination!r}")
        folded = [_ae_key(d) for d in self.destinations]
        if len(set(folded)) != len(folded):
            raise InvalidInput(f"a destination is listed twice: {list(self.destinations)}")

    def matches(self, ctx: RoutingContext) -> bool:
        """True when every condition holds (a rule without conditions always matches)."""
        return all(c.matches(ctx) for c in self.conditions)


@dataclass(frozen=True, slots=True)
class RuleSet:
    """One version of the routing rules, in the order they were written."""

    rules: tuple[Rule, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(self.rules))
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name.casefold() in seen:
                raise InvalidInput(f"rule name {rule.name!r} is used twice")
            seen.add(rule.name.casefold())


def _ae_key(ae_title: str) -> str:
    return unpad(ae_title).casefold()


def destinations_for(rules: RuleSet, ctx: RoutingContext, trigger: Trigger) -> frozenset[str]:
    """Where the enabled rules of this trigger send the object, never back to its sender."""
    sender = _ae_key(ctx.calling_ae)
    return frozenset(
        destination
        for rule in rules.rules
        if rule.enabled and rule.trigger == trigger and rule.matches(ctx)
        for destination in rule.destinations
        if _ae_key(destination) != sender
    )


@dataclass(frozen=True, slots=True)
class RuleVersion:
    """One saved version of the routing rules."""

    version: int
    text: str
    author: str
    comment: str
    created_at: datetime.datetime


@dataclass(frozen=True, slots=True)
class Activation:
    """A rule version made active, by whom and when."""

    version: int
    actor: str
    at: datetime.datetime


class ForwardState(enum.StrEnum):
    """Where the forwarding of one instance to one destination stands."""

    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ForwardRecord:
    """One instance on its way to (or at) one destination."""

    sop_instance_uid: Uid
    study_instance_uid: Uid
    destination: str
    blob_key: str
    rule_version: int
    state: ForwardState
    queued_at: datetime.datetime
    sent_at: datetime.datetime | None = None
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class Alert:
    """Something an operator must look at (a routing loop, a study coming back, a full disk)."""

    kind: str
    subject: str
    peer: str
    detail: str
    first_at: datetime.datetime
    last_at: datetime.datetime
    count: int


__all__ = [
    "Activation",
    "Alert",
    "ForwardRecord",
    "ForwardState",
    "Rule",
    "RuleSet",
    "RuleVersion",
    "Trigger",
    "destinations_for",
]
