"""C-FIND attribute matching and return-key projection over pydicom Datasets (PS3.4 C.2.2.2).

Matching follows PS3.4 C.2.2.2 and K.2.2: a key with a zero-length value, or a wildcard-capable
key holding only ``*``, is universal (a return key only); every other key must be present and
non-empty in the candidate. Person names compare case-insensitively, group by group, with
trailing ``^`` insignificant; other strings compare exactly after trimming spaces, with ``*`` and
``?`` wildcards except for DA, TM, DT and UI. DA/TM/DT keys take single values or ranges whose
missing parts fill with the lowest value (lower bound) or the highest (upper bound); UTC offsets
of DT values are ignored. A DA key and its paired TM key that are both ranges match as one
date-time range (C.2.2.2.5.1). A multi-valued key matches when any of its values matches any
candidate value, which gives List of UID Matching for UI. A sequence key holds at most one item
and matches when some candidate item matches all of its keys (C.2.2.2.6). Malformed query
values raise MalformedMessage; malformed candidate values simply do not match.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from pydicom import config
from pydicom.dataelem import DataElement, empty_value_for_VR
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from pacsflow.domain.errors import MalformedMessage

__all__ = ["matches", "project"]

_SPECIFIC_CHARACTER_SET: Final = 0x00080005
_QUERY_RETRIEVE_LEVEL: Final = 0x00080052
_NEVER_MATCHED: Final = frozenset({_SPECIFIC_CHARACTER_SET, _QUERY_RETRIEVE_LEVEL})

# PS3.4 C.2.2.2.4: wild card matching is defined for these VRs only.
_WILDCARD_VRS: Final = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_NUMERIC_VRS: Final = frozenset({"DS", "FD", "FL", "IS", "SL", "SS", "SV", "UL", "US", "UV"})

# PS3.4 C.2.2.2.5.1: DA/TM pairs matched as one date-time when both are ranges.
_DATE_TIME_PAIRS: Final = (
    (BaseTag(0x00080020), BaseTag(0x00080030)),  # Study Date / Time
    (BaseTag(0x00080021), BaseTag(0x00080031)),  # Series Date / Time
    (BaseTag(0x00080022), BaseTag(0x00080032)),  # Acquisition Date / Time
    (BaseTag(0x00080023), BaseTag(0x00080033)),  # Content Date / Time
    (BaseTag(0x00400002), BaseTag(0x00400003)),  # Scheduled Procedure Step Start Date / Time
)

_YEAR, _MONTH, _DAY = r"(\d{4})", r"(0[1-9]|1[0-2])", r"(0[1-9]|[12]\d|3[01])"
_HOUR, _MINUTE, _SECOND, _FRACTION = r"([01]\d|2[0-3])", r"([0-5]\d)", r"([0-5]\d|60)", r"(\d{1,6})"
_DA_PATTERN: Final = re.compile(f"{_YEAR}{_MONTH}{_DAY}")
_TM_PATTERN: Final = re.compile(f"{_HOUR}(?:{_MINUTE}(?:{_SECOND}(?:\\.{_FRACTION})?)?)?")
_DT_PATTERN: Final = re.compile(
    f"{_YEAR}(?:{_MONTH}(?:{_DAY}(?:{_HOUR}(?:{_MINUTE}(?:{_SECOND}(?:\\.{_FRACTION})?)?)?)?)?)?"
    r"(?:[+-](?:0\d|1[0-4])[0-5]\d)?"  # PS3.5 &ZZXX offsets reach +14:00
)
_DAY_START: Final = "000000.000000"
_DAY_END: Final = "235959.999999"


@dataclass(frozen=True, slots=True)
class _Span:
    """An inclusive interval of fixed-width temporal strings; None is an open end."""

    low: str | None
    high: str | None

    def overlaps(self, other: _Span) -> bool:
        """True when the two intervals share at least one instant."""
        starts_in_time = self.low is None or other.high is None or self.low <= other.high
        ends_in_time = self.high is None or other.low is None or other.low <= self.high
        return starts_in_time and ends_in_time


def matches(query: Dataset, candidate: Dataset) -> bool:
    """True when candidate satisfies every matching key of the query identifier."""
    _check_query(query)
    return _match_dataset(query, candidate)


def project(query: Dataset, candidate: Dataset) -> Dataset:
    """A new dataset holding the query's keys with the candidate's values, sharing no elements.

    Absent candidate values come back empty; Query/Retrieve Level echoes the query. A sequence
    key returns the candidate items matching its item, each projected onto that item; a sequence
    key with no item or a zero-length item returns the entire sequence (PS3.4 C.2.2.2.6).
    """
    result = Dataset()
    for key in query:
        if _is_structural(key.tag):
            continue
        if key.tag == _QUERY_RETRIEVE_LEVEL:
            result.add(_copy_element(key))
            continue
        found = _element(candidate, key.tag)
        if key.VR == "SQ":
            result.add(DataElement(key.tag, "SQ", _project_sequence(key, found)))
        elif found is None or found.VR == "SQ":
            result.add(
                DataElement(
                    key.tag, key.VR, empty_value_for_VR(key.VR), validation_mode=config.IGNORE
                )
            )
        else:
            result.add(_copy_element(found))
    return result


def _project_sequence(key: DataElement, found: DataElement | None) -> Sequence:
    """The candidate's items for a sequence key, projected and filtered by the key's item."""
    candidate_items = _items(found)
    query_items = _items(key)
    keyed = _keyed_item(key)
    if not query_items or len(query_items[0]) == 0:
        return Sequence([copy.deepcopy(item) for item in candidate_items])
    return Sequence(
        [
            project(query_items[0], item)
            for item in candidate_items
            if keyed is None or _match_dataset(keyed, item)
        ]
    )


def _copy_element(elem: DataElement) -> DataElement:
    """A new element with a deep copy of the value; the value was validated when first stored."""
    return DataElement(elem.tag, elem.VR, copy.deepcopy(elem.value), validation_mode=config.IGNORE)


def _match_dataset(query: Dataset, candidate: Dataset) -> bool:
    """True when candidate satisfies every matching key of query (one dataset or item level)."""
    paired: set[BaseTag] = set()
    for date_tag, time_tag in _DATE_TIME_PAIRS:
        span = _combined_query_span(query, date_tag, time_tag)
        if span is None:
            continue
        if not _match_combined(span, candidate, date_tag, time_tag):
            return False
        paired.update((date_tag, time_tag))
    for key in query:
        if key.tag in paired or _is_ignored(key.tag):
            continue
        if not _match_element(key, _element(candidate, key.tag)):
            return False
    return True


def _match_element(key: DataElement, found: DataElement | None) -> bool:
    """True when the candidate element satisfies one query key."""
    if key.VR == "SQ":
        return _match_sequence(key, found)
    if isinstance(key.value, bytes):
        return key.is_empty or (found is not None and bool(found.value == key.value))
    if _is_universal(key):
        return True
    if found is None or found.VR == "SQ" or isinstance(found.value, bytes):
        return False
    predicates = [_value_predicate(key, text) for text in _query_texts(key)]
    return any(predicate(value) for predicate in predicates for value in _texts(found))


def _match_sequence(key: DataElement, found: DataElement | None) -> bool:
    """True when some candidate item matches all keys of the query item (PS3.4 C.2.2.2.6)."""
    keyed = _keyed_item(key)
    if keyed is None:
        return True
    return any(_match_dataset(keyed, item) for item in _items(found))


def _value_predicate(key: DataElement, text: str) -> Callable[[str], bool]:
    """A test of one candidate value against one non-universal query value."""
    vr = key.VR
    if vr in _NORMALIZERS:
        span = _query_span(vr, text, _location(key))
        normalize = _NORMALIZERS[vr]

        def temporal(value: str) -> bool:
            point = normalize(value, False)
            return point is not None and span.overlaps(_Span(point, point))

        return temporal
    if vr == "PN":
        return lambda value: _match_person_name(text, value)
    if vr in _WILDCARD_VRS and ("*" in text or "?" in text):
        pattern = _wildcard_regex(text, False)
        return lambda value: pattern.fullmatch(value) is not None
    if vr in _NUMERIC_VRS:
        number = _query_number(text, _location(key))
        return lambda value: _candidate_number(value) == number
    return lambda value: value == text


def _match_person_name(query: str, value: str) -> bool:
    """Case-insensitive PN match, group by group, trailing ``^`` insignificant."""
    value_groups = _pn_groups(value)
    for index, group in enumerate(_pn_groups(query)):
        if not group:
            continue
        other = value_groups[index] if index < len(value_groups) else ""
        if _wildcard_regex(group, True).fullmatch(other) is None:
            return False
    return True


def _pn_groups(text: str) -> tuple[str, ...]:
    """The component groups of a PN value, without trailing empty components or groups."""
    groups = [group.rstrip("^ ").strip() for group in text.split("=")]
    while groups and not groups[-1]:
        groups.pop()
    return tuple(groups)


@lru_cache(maxsize=1024)
def _wildcard_regex(text: str, ignore_case: bool) -> re.Pattern[str]:
    """A regex anchored by fullmatch: ``*`` any run, ``?`` one character, all else literal."""
    parts = [".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in text]
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile("".join(parts), flags)


def _query_number(text: str, location: str) -> float:
    """A numeric query value, or MalformedMessage."""
    number = _candidate_number(text)
    if number is None:
        raise MalformedMessage(f"not a number: {text!r}", location=location)
    return number


def _candidate_number(text: str) -> float | None:
    """A numeric value, or None when it does not parse."""
    try:
        return float(text)
    except ValueError:
        return None


def _normalize_da(text: str, high: bool) -> str | None:
    """YYYYMMDD, or None when not a date; ``high`` is irrelevant as DA has no partial values."""
    match = _DA_PATTERN.fullmatch(text.replace(".", ""))  # ACR-NEMA YYYY.MM.DD
    return match.group(0) if match else None


def _normalize_tm(text: str, high: bool) -> str | None:
    """HHMMSS.FFFFFF with missing parts lowest (or highest when ``high``), or None."""
    match = _TM_PATTERN.fullmatch(text.replace(":", ""))  # ACR-NEMA HH:MM:SS
    if match is None:
        return None
    hours, minutes, seconds, fraction = match.groups()
    fill = "59" if high else "00"
    digit = "9" if high else "0"
    return f"{hours}{minutes or fill}{seconds or fill}.{(fraction or '').ljust(6, digit)}"


def _normalize_dt(text: str, high: bool) -> str | None:
    """YYYYMMDDHHMMSS.FFFFFF with missing parts lowest (or highest), or None; offset ignored."""
    match = _DT_PATTERN.fullmatch(text)
    if match is None:
        return None
    year, month, day, hours, minutes, seconds, fraction = match.groups()
    fills = ("12", "31", "23", "59", "59") if high else ("01", "01", "00", "00", "00")
    parts = (month, day, hours, minutes, seconds)
    digits = "".join(part or fill for part, fill in zip(parts, fills, strict=True))
    return f"{year}{digits}.{(fraction or '').ljust(6, '9' if high else '0')}"


_NORMALIZERS: Final[dict[str, Callable[[str, bool], str | None]]] = {
    "DA": _normalize_da,
    "TM": _normalize_tm,
    "DT": _normalize_dt,
}


@lru_cache(maxsize=1024)
def _split_range(vr: str, text: str) -> tuple[str, str] | None:
    """The (low, high) bound texts when text is a range rather than a single value, else None."""
    normalize = _NORMALIZERS[vr]
    if normalize(text, False) is not None:
        return None
    # Try every hyphen: a DT bound may carry a negative UTC offset.
    for index, char in enumerate(text):
        if char != "-":
            continue
        low, high = text[:index], text[index + 1 :]
        if not (low or high):
            continue
        if (not low or normalize(low, False)) and (not high or normalize(high, True)):
            return low, high
    return None


@lru_cache(maxsize=1024)
def _query_span(vr: str, text: str, location: str) -> _Span:
    """The interval a DA/TM/DT query value selects, or MalformedMessage."""
    normalize = _NORMALIZERS[vr]
    single = normalize(text, False)
    if single is not None:
        return _Span(single, single)
    bounds = _split_range(vr, text)
    if bounds is None:
        raise MalformedMessage(f"not a {vr} value or range: {text!r}", location=location)
    low, high = bounds
    return _Span(normalize(low, False) if low else None, normalize(high, True) if high else None)


def _combined_query_span(query: Dataset, date_tag: BaseTag, time_tag: BaseTag) -> _Span | None:
    """The date-time interval of a DA range plus TM range pair, or None when not both ranges."""
    date_key = _element(query, date_tag)
    time_key = _element(query, time_tag)
    if date_key is None or time_key is None:
        return None
    dates = _texts(date_key)
    times = _texts(time_key)
    if len(dates) != 1 or len(times) != 1:
        return None
    date_range = _split_range("DA", dates[0])
    time_range = _split_range("TM", times[0])
    if date_range is None or time_range is None:
        return None
    (date_low, date_high), (time_low, time_high) = date_range, time_range
    low = high = None
    if date_low:
        low = f"{_normalize_da(date_low, False)}{_normalize_tm(time_low or '00', False)}"
    if date_high:
        high = f"{_normalize_da(date_high, True)}{_normalize_tm(time_high or '23', True)}"
    return _Span(low, high)


def _match_combined(span: _Span, candidate: Dataset, date_tag: BaseTag, time_tag: BaseTag) -> bool:
    """True when the candidate's date and time fall in span; no time means the whole day."""
    date_elem = _element(candidate, date_tag)
    time_elem = _element(candidate, time_tag)
    dates = [_normalize_da(text, False) for text in _texts(date_elem)]
    time_texts = _texts(time_elem)
    if not time_texts:
        spans = [_Span(f"{day}{_DAY_START}", f"{day}{_DAY_END}") for day in dates if day]
    else:
        times = [_normalize_tm(text, False) for text in time_texts]
        spans = [_Span(f"{day}{tm}", f"{day}{tm}") for day in dates if day for tm in times if tm]
    return any(span.overlaps(other) for other in spans)


def _check_query(query: Dataset) -> None:
    """Raise MalformedMessage for an unusable key, whatever the candidate."""
    for key in query:
        if _is_ignored(key.tag):
            continue
        if key.VR == "SQ":
            item = _keyed_item(key)
            if item is not None:
                _check_query(item)
        elif not _is_universal(key):
            for text in _query_texts(key):
                _value_predicate(key, text)


def _keyed_item(key: DataElement) -> Dataset | None:
    """The item of a sequence key when it holds a matching key, None for universal matching."""
    items = _items(key)
    if len(items) > 1:
        raise MalformedMessage(
            "a sequence key holds at most one item (PS3.4 C.2.2.2.6)", location=_location(key)
        )
    if items and any(not _is_ignored(e.tag) and not _is_universal(e) for e in items[0]):
        return items[0]
    return None


def _is_universal(key: DataElement) -> bool:
    """True for a key that matches everything: empty, a lone ``*``, or an empty sequence item."""
    if key.VR == "SQ":
        return _keyed_item(key) is None
    if isinstance(key.value, bytes):
        return bool(key.is_empty)
    texts = _query_texts(key)
    return not texts or (key.VR in _WILDCARD_VRS and any(set(t) == {"*"} for t in texts))


def _query_texts(key: DataElement) -> list[str]:
    """The non-empty values of a query key; a PN of only separators counts as empty."""
    texts = _texts(key)
    if key.VR == "PN":
        return [text for text in texts if _pn_groups(text)]
    return texts


def _texts(elem: DataElement | None) -> list[str]:
    """The element's values as trimmed, non-empty strings."""
    if elem is None or elem.value is None:
        return []
    value = elem.value
    values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    texts = (str(v).strip(" \x00") for v in values if v is not None and not isinstance(v, bytes))
    return [text for text in texts if text]


def _items(elem: DataElement | None) -> list[Dataset]:
    """The items of a sequence element; none for anything else."""
    if elem is None or elem.VR != "SQ" or not elem.value:
        return []
    return list(elem.value)


def _element(dataset: Dataset, tag: BaseTag) -> DataElement | None:
    """The dataset's element for tag, or None."""
    return dataset.get(tag)


def _location(key: DataElement) -> str:
    """The keyword naming a key in errors, or its tag when private."""
    return str(key.keyword or key.tag)


def _is_structural(tag: BaseTag) -> bool:
    """True for command elements and group lengths, which are never keys."""
    return bool(tag.group == 0 or tag.element == 0)


def _is_ignored(tag: BaseTag) -> bool:
    """True for elements that select nothing: character set, level, structure."""
    return tag in _NEVER_MATCHED or _is_structural(tag)
