"""Routing rules as YAML text: read into the domain's rule set, and written back canonically.

The rule language is described in ``pacsflow.domain.routing``; this module owns only its text
form. YAML is read with the YAML 1.2 core schema: ``yes``/``no``/``on``/``off``, ``0012``,
``08:00`` and ``2024-01-01`` are text, not booleans, octal, sexagesimal numbers or dates;
duplicate keys are an error. A problem is reported with the rule and the line it is on.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Final, cast

import yaml

from pacsflow.domain.errors import InvalidInput
from pacsflow.domain.routing import Rule, RuleSet, Trigger
from pacsflow.domain.routing_conditions import CONTEXT_FIELDS, Condition, Operator, unpad

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
    name = unpad(_text(pairs["name"], "name"))
    conditions: list[Condition] = []
    when = pairs.get("when")
    if when is not None and not (isinstance(when, yaml.ScalarNode) and _scalar(when) is None):
        conditions = [_condition(f, n, is_keyword) for f, n in _mapping(when, "when")]
    if "send_to" not in pairs:
        raise _Problem("send_to is missing", node)
    send_to = pairs["send_to"]
    targets = send_to.value if isinstance(send_to, yaml.SequenceNode) else [send_to]
    destinations = tuple(unpad(_text(n, "send_to")) for n in targets)
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


_DICOM_KEYWORD: Final = re.compile(r"[A-Z][A-Za-z0-9]{0,63}")


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


class YamlRuleText:
    """The routing rules' text form (the ``RuleText`` port): YAML, or JSON being YAML."""

    def parse(self, text: str, *, is_keyword: Callable[[str], bool] | None = None) -> RuleSet:
        """Read a rule set; InvalidInput names the rule and the problem."""
        return parse_rules(text, is_keyword=is_keyword)

    def diff(self, old_text: str, new_text: str, *, old_label: str, new_label: str) -> str:
        """A unified diff of two rule sets in canonical form; empty when they are the same."""
        return rules_diff(old_text, new_text, old_label=old_label, new_label=new_label)


__all__ = [
    "YamlRuleText",
    "dump_rules",
    "parse_rules",
    "rules_diff",
]
