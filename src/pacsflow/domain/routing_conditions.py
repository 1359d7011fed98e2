"""Routing conditions: the context a rule looks at, and one test of one field.

A condition's value is checked and normalised when it is built, from plain data (text,
numbers, lists, booleans); the operators are described in ``pacsflow.domain.routing``.
"""

from __future__ import annotations

import datetime
import enum
import functools
import math
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, cast

from pacsflow.domain.errors import InvalidInput


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
_CLOCK: Final = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?")
_DECIMAL: Final = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def unpad(value: str) -> str:
    """The value without DICOM padding (surrounding whitespace and NUL)."""
    return value.strip(_PADDING)


def is_text_clean(value: str) -> bool:
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
            kept = tuple(v for v in map(unpad, values) if v)
            if kept:
                cleaned[keyword] = kept
        object.__setattr__(self, "attributes", MappingProxyType(cleaned))

    def values(self, field: str) -> tuple[str, ...]:
        """The non-empty values of a DICOM keyword or context field, padding stripped."""
        if field == "time_of_day":
            moment = self.time_of_day
            return () if moment is None else (moment.isoformat(timespec="seconds"),)
        if field in CONTEXT_FIELDS:
            value = unpad(cast(str, getattr(self, field)))
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
    text = unpad(value)
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
        text = unpad(bound)
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


__all__ = [
    "CONTEXT_FIELDS",
    "MAX_REGEX_LENGTH",
    "MAX_REGEX_SUBJECT",
    "Condition",
    "Operator",
    "RangeBound",
    "RoutingContext",
    "is_text_clean",
    "unpad",
]
