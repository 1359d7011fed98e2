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

``time_of_day`` takes only ``range`` and ``exists``. YAML is read with the YAML 1.2 core
schema: ``yes``/``no``/``on``/``off``, ``0012``, ``08:00`` and ``2024-01-01`` are text, not
booleans, octal, sexagesimal numbers or dates; duplicate keys are an error.
"""

from __future__ import annotations

import datetime
import difflib
import enum
import functools
import math
import re
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, cast

import yaml

from pacsflow.domain.errors import InvalidInput
from pacsflow.domain.uids import Uid


class Trigger(enum.StrEnum):
    """When a rule is evaluated: on each arriving instance, or once a study is stable."""

    INSTANCE = "instance"
    STUDY_STABLE = "study_stable"


class Operator(enum.StrEnum):
    """How a condition compares a field with its value."""

    EQUALS = "equals"
    IN = "in"
    WILDCARD = "wildcard"
    REGEX = "regex"
    RANGE = "range"
    EXISTS = "exists"


CONTEXT_FIELDS: Final = frozenset(
    {"calling_ae", "called_ae", "site", "priority", "procedure_code", "time_of_day"}
)

#: One end of a range: a number, a text, or None for an open end.
RangeBound = int | float | str | None

MAX_REGEX_LENGTH: Final = 256
MAX_REGEX_SUBJECT: Final = 1024

_PADDING: Final = string.whitespace + "\x00"
_KEYWORD_SHAPE: Final = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")
_DICOM_KEYWORD: Final = re.compile(r"[A-Z][A-Za-z0-9]{0,63}")
_CLOCK: Final = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?")
_DECIMAL: Final = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def _unpad(value: str) -> str:
    return value.strip(_PADDING)


def _is_text_clean(value: str) -> bool:
    """True when a name holds no control characters (it appears in logs, UIs and YAML)."""
    return value.isprintable()


@dataclass(frozen=True, slots=True)
class RoutingContext:
    """What a rule can look at: the object's DICOM attributes and how it reached us."""

    attributes: Mapping[str, tuple[str, ...]]
    calling_ae: str = ""
    called_ae: str = ""
    site: str = ""
    priority: str = ""
    procedure_code: str = ""
    time_of_day: datetime.time | None = None

    def __post_init__(self) -> None:
        # Padding is stripped and empty values dropped once, not on every rule evaluated;
        # a bare string is one value, not a sequence of characters.
        cleaned: dict[str, tuple[str, ...]] = {}
        for keyword, raw in self.attributes.items():
            values = (raw,) if isinstance(raw, str) else raw
            kept = tuple(v for v in map(_unpad, values) if v)
            if kept:
                cleaned[keyword] = kept
        object.__setattr__(self, "attributes", MappingProxyType(cleaned))

    def values(self, field: str) -> tuple[str, ...]:
        """The non-empty values of a DICOM keyword or context field, padding stripped."""
        if field == "time_of_day":
            moment = self.time_of_day
            return () if moment is None else (moment.isoformat(timespec="seconds"),)
        if field in CONTEXT_FIELDS:
            value = _unpad(cast(str, getattr(self, field)))
            return (value,) if value else ()
        return self.attributes.get(field, ())


@dataclass(frozen=True, slots=True)
class Condition:
    """One test of a field; the value is normalised (sequences to tuples, text unpadded)."""

    field: str
    operator: Operator
    value: object

    def __post_init__(self) -> None:
        if not isinstance(self.field, str) or not (
            self.field in CONTEXT_FIELDS or _KEYWORD_SHAPE.fullmatch(self.field)
        ):
            raise InvalidInput(
                f"{self.field!r} is neither a DICOM keyword nor one of "
                f"{', '.join(sorted(CONTEXT_FIELDS))}"
            )
        try:
            operator = Operator(self.operator)
        except ValueError:
            raise InvalidInput(
                f"{self.field}: unknown operator {self.operator!r} "
                f"(expected one of {', '.join(Operator)})"
            ) from None
        object.__setattr__(self, "operator", operator)
        object.__setattr__(self, "value", _normalise_value(self.field, operator, self.value))

    def matches(self, ctx: RoutingContext) -> bool:
        """True when the context satisfies this condition."""
        values = ctx.values(self.field)
        match self.operator:
            case Operator.EXISTS:
                return bool(values) is self.value
            case Operator.EQUALS:
                return self.value in values
            case Operator.IN:
                wanted = cast(tuple[str, ...], self.value)
                return any(v in wanted for v in values)
            case Operator.WILDCARD:
                pattern = cast(str, self.value).casefold()
                return any(_wildcard_match(pattern, v.casefold()) for v in values)
            case Operator.REGEX:
                regex = _compile_regex(cast(str, self.value))
                return any(regex.search(v[:MAX_REGEX_SUBJECT]) for v in values)
            case Operator.RANGE:
                low, high = cast(tuple[RangeBound, RangeBound], self.value)
                if self.field == "time_of_day":
                    return ctx.time_of_day is not None and _in_clock_range(
                        ctx.time_of_day, cast(str | None, low), cast(str | None, high)
                    )
                return any(_in_range(v, low, high) for v in values)
        raise AssertionError(self.operator)  # pragma: no cover - Operator is exhaustive


def _normalise_value(field: str, operator: Operator, value: object) -> object:
    """The canonical form of a condition's value, or InvalidInput naming the problem."""
    where = f"{field}: {operator}"
    if field == "time_of_day" and operator not in (Operator.RANGE, Operator.EXISTS):
        raise InvalidInput(f"{where}: time_of_day takes only range or exists")
    match operator:
        case Operator.EXISTS:
            if not isinstance(value, bool):
                raise InvalidInput(f"{where} needs true or false, not {value!r}")
            return value
        case Operator.EQUALS | Operator.WILDCARD:
            return _condition_text(where, value)
        case Operator.IN:
            if isinstance(value, str | bytes) or not isinstance(value, Iterable):
                raise InvalidInput(f"{where} needs a list of values, not {value!r}")
            items = tuple(_condition_text(where, v) for v in value)
            if not items:
                raise InvalidInput(f"{where} needs at least one value")
            return items
        case Operator.REGEX:
            if not isinstance(value, str) or not value:
                raise InvalidInput(f"{where} needs a pattern, not {value!r}")
            _check_regex(where, value)
            return value
        case Operator.RANGE:
            return _range_value(field, where, value)
    raise AssertionError(operator)  # pragma: no cover - Operator is exhaustive


def _condition_text(where: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{where} needs text, not {value!r}")
    text = _unpad(value)
    if not text:
        raise InvalidInput(f"{where} needs a non-empty value (use exists: false for empty)")
    return text


def _range_value(field: str, where: str, value: object) -> tuple[RangeBound, RangeBound]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidInput(f"{where} needs [low, high], not {value!r}")
    bounds = list(value)
    if len(bounds) != 2:
        raise InvalidInput(f"{where} needs exactly two ends [low, high], got {len(bounds)}")
    low, high = (_range_bound(where, b) for b in bounds)
    if low is None and high is None:
        raise InvalidInput(f"{where} has two open ends (use exists: true)")
    if field == "time_of_day":
        for bound in (low, high):
            if bound is not None and (not isinstance(bound, str) or not _CLOCK.fullmatch(bound)):
                raise InvalidInput(f"{where}: {bound!r} is not a time of day HH:MM or HH:MM:SS")
        return low, high  # start after end wraps midnight
    kinds = {isinstance(b, str) for b in (low, high) if b is not None}
    if len(kinds) > 1:
        raise InvalidInput(f"{where} mixes a number and a text end: {[low, high]!r}")
    if low is not None and high is not None and low > high:  # type: ignore[operator]
        raise InvalidInput(f"{where} is empty: {low!r} is after {high!r}")
    return low, high


def _range_bound(where: str, bound: object) -> RangeBound:
    if bound is None:
        return None
    if isinstance(bound, bool) or not isinstance(bound, int | float | str):
        raise InvalidInput(f"{where}: {bound!r} is not a number, a text or null")
    if isinstance(bound, float) and not math.isfinite(bound):
        raise InvalidInput(f"{where}: {bound!r} is not a finite number")
    if isinstance(bound, str):
        text = _unpad(bound)
        if not text:
            raise InvalidInput(f"{where}: an empty end (use null for an open end)")
        return text
    return bound


def _in_range(value: str, low: RangeBound, high: RangeBound) -> bool:
    subject: float | str
    if isinstance(low, str) or isinstance(high, str):
        subject = value
    elif _DECIMAL.fullmatch(value):
        subject = float(value)
    else:
        return False
    return (low is None or low <= subject) and (  # type: ignore[operator]
        high is None or subject <= high  # type: ignore[operator]
    )


def _clock_key(text: str) -> tuple[int, ...]:
    match = _CLOCK.fullmatch(text)
    assert match is not None  # checked when the condition was built
    return tuple(int(part) for part in match.groups() if part is not None)


def _in_clock_range(moment: datetime.time, low: str | None, high: str | None) -> bool:
    clock = (moment.hour, moment.minute, moment.second)
    start = None if low is None else _clock_key(low)
    end = None if high is None else _clock_key(high)
    # Each end is compared at its own precision: "18:00" holds until 18:00:59.
    after_start = start is None or clock[: len(start)] >= start
    before_end = end is None or clock[: len(end)] <= end
    if start is not None and end is not None and (*start, 0)[:3] > (*end, 0)[:3]:
        return after_start or before_end  # wraps midnight
    return after_start and before_end


def _wildcard_match(pattern: str, text: str) -> bool:
    """DICOM wildcard match of a whole value, in O(len(pattern) * len(text)) at worst."""
    p = t = 0
    star, resume = -1, 0
    while t < len(text):
        if p < len(pattern) and pattern[p] in ("?", text[t]):
            p += 1
            t += 1
        elif p < len(pattern) and pattern[p] == "*":
            star, resume = p, t
            p += 1
        elif star >= 0:
            p, resume = star + 1, resume + 1
            t = resume
        else:
            return False
    return all(c == "*" for c in pattern[p:])


@functools.lru_cache(maxsize=1024)
def _compile_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_QUANTIFIER: Final = re.compile(r"[*+?]|\{[0-9]*,?[0-9]*\}")
_REPEATING: Final = re.compile(r"[*+]|\{[0-9]*,[0-9]*\}|\{[0-9]*[2-9][0-9]*\}|\{1[0-9]+\}")


def _check_regex(where: str, pattern: str) -> None:
    if len(pattern) > MAX_REGEX_LENGTH:
        raise InvalidInput(f"{where}: the pattern is longer than {MAX_REGEX_LENGTH} characters")
    try:
        _compile_regex(pattern)
    except re.error as exc:
        raise InvalidInput(f"{where}: invalid pattern {pattern!r}: {exc}") from exc
    if _has_nested_repeat(pattern):
        raise InvalidInput(
            f"{where}: {pattern!r} repeats a group that itself repeats, which can take "
            "exponential time; rewrite it without the nested repeat"
        )


def _has_nested_repeat(pattern: str) -> bool:
    """True for a repeated group holding a quantifier, e.g. ``(a+)+`` or ``(x?y*)*``.

    A heuristic guard against catastrophic backtracking, not a proof of safety.
    """
    groups: list[bool] = []  # per open group: whether it holds a quantifier
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if char == "[":
            i = _skip_class(pattern, i)
            continue
        if char == "(":
            groups.append(False)
            i += 2 if pattern.startswith("(?", i) else 1
            continue
        if char == ")":
            inner = groups.pop() if groups else False
            i += 1
            repeat = _REPEATING.match(pattern, i)
            if repeat and inner:
                return True
            quantified = _QUANTIFIER.match(pattern, i)
            if (inner or quantified) and groups:
                groups[-1] = True
            continue
        if _QUANTIFIER.match(pattern, i) and groups:
            groups[-1] = True
        i += 1
    return False


def _skip_class(pattern: str, i: int) -> int:
    """The index just after the character class starting at ``pattern[i] == '['``."""
    j = i + 1
    if pattern.startswith("^", j):
        j += 1
    if pattern.startswith("]", j):
        j += 1
    while j < len(pattern) and pattern[j] != "]":
        j += 2 if pattern[j] == "\\" else 1
    return j + 1


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
        if not isinstance(self.name, str) or not self.name or self.name != _unpad(self.name):
            raise InvalidInput(f"a rule needs a name without surrounding spaces: {self.name!r}")
        if not _is_text_clean(self.name):
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
                or destination != _unpad(destination)
                or not _is_text_clean(destination)
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
    return _unpad(ae_title).casefold()


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


# --- YAML -----------------------------------------------------------------------------------

_RULE_KEYS: Final = ("name", "description", "trigger", "when", "send_to", "enabled")
_YAML_TAG: Final = "tag:yaml.org,2002:"
_NULL: Final = re.compile(r"~|null|Null|NULL|")
_TRUE: Final = re.compile(r"true|True|TRUE")
_FALSE: Final = re.compile(r"false|False|FALSE")
# Numbers as YAML 1.2 core reads them, narrowed so that every text the YAML 1.1 dumper
# leaves unquoted is read back as text (a float needs a dot; no octal, hex or sexagesimal).
_INT: Final = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_FLOAT: Final = re.compile(r"[-+]?[0-9]+\.[0-9]*(?:[eE][-+][0-9]+)?")


class _Problem(Exception):
    """A problem in the rule text, with the YAML node it was found at."""

    def __init__(self, message: str, node: yaml.Node | None = None) -> None:
        super().__init__(message)
        self.node = node


def _scalar(node: yaml.Node) -> object:
    """A scalar's value under the YAML 1.2 core schema; quoted scalars are always text."""
    if not isinstance(node, yaml.ScalarNode):
        raise _Problem("expected a single value, not a list or mapping", node)
    if not node.tag.startswith(_YAML_TAG):
        raise _Problem(f"unsupported tag {node.tag}", node)
    text = cast(str, node.value)
    if node.style is not None or node.tag == _YAML_TAG + "str":
        return text
    if _NULL.fullmatch(text):
        return None
    if _TRUE.fullmatch(text):
        return True
    if _FALSE.fullmatch(text):
        return False
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def _text(node: yaml.Node, what: str) -> str:
    """A scalar as written (so ``0012`` and ``1.50`` keep their digits), null/bool refused."""
    value = _scalar(node)
    if value is None or isinstance(value, bool):
        raise _Problem(f"{what} needs text, not {node.value or 'null'}", node)
    return cast(str, node.value)


def _mapping(node: yaml.Node, what: str) -> list[tuple[str, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise _Problem(f"{what} must be a mapping", node)
    pairs: list[tuple[str, yaml.Node]] = []
    for key_node, value_node in node.value:
        key = _text(key_node, f"a key of {what}")
        if any(key == seen for seen, _ in pairs):
            raise _Problem(f"{what} has the key {key!r} twice", key_node)
        pairs.append((key, value_node))
    return pairs


def _sequence(node: yaml.Node, what: str) -> list[yaml.Node]:
    if not isinstance(node, yaml.SequenceNode):
        raise _Problem(f"{what} must be a list", node)
    return cast(list[yaml.Node], node.value)


def _condition(field: str, node: yaml.Node, is_keyword: Callable[[str], bool]) -> Condition:
    if field not in CONTEXT_FIELDS and not is_keyword(field):
        raise _Problem(
            f"{field!r} is neither a DICOM keyword nor one of {', '.join(sorted(CONTEXT_FIELDS))}",
            node,
        )
    value: object
    if isinstance(node, yaml.SequenceNode):
        operator, value = Operator.IN, [_text(n, field) for n in node.value]
    elif isinstance(node, yaml.MappingNode):
        pairs = _mapping(node, field)
        if len(pairs) != 1:
            raise _Problem(f"{field} needs exactly one operator, e.g. {{equals: X}}", node)
        name, value_node = pairs[0]
        try:
            operator = Operator(name)
        except ValueError:
            raise _Problem(
                f"{field}: unknown operator {name!r} (expected one of {', '.join(Operator)})",
                node,
            ) from None
        value = _operand(field, operator, value_node)
    else:
        shorthand = _scalar(node)
        if shorthand is None or isinstance(shorthand, bool):
            raise _Problem(
                f"{field}: a bare {node.value!r} is ambiguous; write {{exists: true}}, "
                f"{{exists: false}} or {{equals: '{node.value}'}}",
                node,
            )
        operator, value = Operator.EQUALS, _text(node, field)
    try:
        return Condition(field, operator, value)
    except InvalidInput as exc:
        raise _Problem(str(exc), node) from exc


def _operand(field: str, operator: Operator, node: yaml.Node) -> object:
    where = f"{field}: {operator}"
    match operator:
        case Operator.EXISTS | Operator.RANGE:
            if isinstance(node, yaml.SequenceNode):
                return [_scalar(n) for n in node.value]
            return _scalar(node)
        case Operator.IN:
            return [_text(n, where) for n in _sequence(node, where)]
        case _:
            return _text(node, where)


def _rule(node: yaml.Node, is_keyword: Callable[[str], bool]) -> Rule:
    pairs = dict(_mapping(node, "a rule"))
    if "name" not in pairs:
        raise _Problem("a rule needs a name", node)
    unknown = sorted(set(pairs) - set(_RULE_KEYS))
    if unknown:
        raise _Problem(
            f"unknown key {unknown[0]!r} (expected {', '.join(_RULE_KEYS)})",
            node,
        )
    name = _unpad(_text(pairs["name"], "name"))
    conditions: list[Condition] = []
    when = pairs.get("when")
    if when is not None and not (isinstance(when, yaml.ScalarNode) and _scalar(when) is None):
        conditions = [_condition(f, n, is_keyword) for f, n in _mapping(when, "when")]
    if "send_to" not in pairs:
        raise _Problem("send_to is missing", node)
    send_to = pairs["send_to"]
    targets = send_to.value if isinstance(send_to, yaml.SequenceNode) else [send_to]
    destinations = tuple(_unpad(_text(n, "send_to")) for n in targets)
    trigger = _text(pairs["trigger"], "trigger") if "trigger" in pairs else Trigger.INSTANCE
    enabled = _scalar(pairs["enabled"]) if "enabled" in pairs else True
    description = ""
    if "description" in pairs and _scalar(pairs["description"]) is not None:
        description = _text(pairs["description"], "description")
    try:
        return Rule(
            name=name,
            conditions=tuple(conditions),
            destinations=destinations,
            trigger=cast(Trigger, trigger),
            enabled=cast(bool, enabled),
            description=description,
        )
    except InvalidInput as exc:
        raise _Problem(str(exc), node) from exc


def _rule_label(index: int, node: yaml.Node) -> str:
    label = f"rule {index + 1}"
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "name":
                if isinstance(value, yaml.ScalarNode):
                    label += f" ({value.value!r})"
                break
    return label


def _line(node: yaml.Node | None) -> str:
    return "" if node is None else f" (line {node.start_mark.line + 1})"


def _default_is_keyword(field: str) -> bool:
    return _DICOM_KEYWORD.fullmatch(field) is not None


def parse_rules(text: str, *, is_keyword: Callable[[str], bool] | None = None) -> RuleSet:
    """Read a rule set from YAML or JSON; InvalidInput names the rule and the problem.

    ``is_keyword`` decides which field names are DICOM keywords; by default any CamelCase
    name is (an adapter can pass the DICOM data dictionary, which the domain may not import).
    """
    check = is_keyword or _default_is_keyword
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = "" if mark is None else f" (line {mark.line + 1}, column {mark.column + 1})"
        problem = exc.problem or exc.context or "unreadable"
        raise InvalidInput(f"the rules are not valid YAML: {problem}{where}") from exc
    except yaml.YAMLError as exc:
        raise InvalidInput(f"the rules are not valid YAML: {exc}") from exc
    if root is None:
        raise InvalidInput("the rules are empty; write 'rules: []' for a set without rules")
    try:
        top = dict(_mapping(root, "the rule set"))
        unknown = sorted(set(top) - {"rules"})
        if unknown or "rules" not in top:
            raise _Problem("the rule set must be a mapping with only the key 'rules'", root)
        rule_nodes = _sequence(top["rules"], "rules")
    except _Problem as exc:
        raise InvalidInput(f"{exc}{_line(exc.node or root)}", location="rules") from None
    rules: list[Rule] = []
    names: dict[str, int] = {}
    for index, node in enumerate(rule_nodes):
        label = _rule_label(index, node)
        try:
            rule = _rule(node, check)
            if rule.name.casefold() in names:
                raise _Problem(f"the name is already used by rule {names[rule.name.casefold()]}")
        except _Problem as exc:
            raise InvalidInput(
                f"{label}: {exc}{_line(exc.node or node)}", location=f"rules[{index}]"
            ) from None
        names[rule.name.casefold()] = index + 1
        rules.append(rule)
    return RuleSet(tuple(rules))


class _Flow(dict[str, object]):
    """A mapping written on one line: ``{in: [CT, MR]}``."""


class _FlowList(list[object]):
    """A list written on one line: ``[ORTHANC, STOW_ARCHIVE]``."""


class _Dumper(yaml.SafeDumper):
    """Safe YAML with list items indented under their key."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_flow(dumper: yaml.SafeDumper, data: _Flow) -> yaml.Node:
    return dumper.represent_mapping(_YAML_TAG + "map", data, flow_style=True)


def _represent_flow_list(dumper: yaml.SafeDumper, data: _FlowList) -> yaml.Node:
    return dumper.represent_sequence(_YAML_TAG + "seq", data, flow_style=True)


def _represent_text(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    # PyYAML folds the YAML line breaks other than \n into spaces in plain and single-quoted
    # text, so those go double-quoted (escaped). A multi-line description reads best as a
    # literal block; the emitter falls back to quotes when a block cannot hold it exactly.
    style: str | None = None
    if any(c in data for c in "\r\x85\u2028\u2029"):
        style = '"'
    elif "\n" in data:
        style = "|"
    return dumper.represent_scalar(_YAML_TAG + "str", data, style=style)


_Dumper.add_representer(str, _represent_text)
_Dumper.add_representer(_Flow, _represent_flow)
_Dumper.add_representer(_FlowList, _represent_flow_list)


def _dumped_value(condition: Condition) -> object:
    if isinstance(condition.value, tuple):
        return _FlowList(condition.value)
    return condition.value


def _rule_data(rule: Rule) -> dict[str, object]:
    data: dict[str, object] = {"name": rule.name}
    if rule.description:
        data["description"] = rule.description
    data["trigger"] = str(rule.trigger)
    if rule.conditions:
        data["when"] = {
            c.field: _Flow({str(c.operator): _dumped_value(c)}) for c in rule.conditions
        }
    data["send_to"] = _FlowList(rule.destinations)
    data["enabled"] = rule.enabled
    return data


def dump_rules(rules: RuleSet) -> str:
    """The canonical YAML of a rule set: every key spelled out, one operator form."""
    document = {"rules": [_rule_data(rule) for rule in rules.rules]}
    return yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=4096,
    )


def rules_diff(
    old_text: str, new_text: str, *, old_label: str = "old", new_label: str = "new"
) -> str:
    """A unified diff of two rule sets in canonical form; empty when they are the same."""
    old = dump_rules(parse_rules(old_text)).splitlines(keepends=True)
    new = dump_rules(parse_rules(new_text)).splitlines(keepends=True)
    return "".join(difflib.unified_diff(old, new, fromfile=old_label, tofile=new_label))


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
    "CONTEXT_FIELDS",
    "MAX_REGEX_LENGTH",
    "MAX_REGEX_SUBJECT",
    "Activation",
    "Alert",
    "Condition",
    "ForwardRecord",
    "ForwardState",
    "Operator",
    "RangeBound",
    "RouteDifference",
    "RoutingContext",
    "Rule",
    "RuleSet",
    "RuleVersion",
    "Trigger",
    "destinations_for",
    "dry_run",
    "dump_rules",
    "parse_rules",
    "rules_diff",
]
