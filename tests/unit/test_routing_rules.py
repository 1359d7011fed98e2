"""Routing rules: the YAML format, each operator, loop protection, dry runs and diffs."""

from __future__ import annotations

import datetime
import re
import string
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacsflow.adapters.routing_yaml import dump_rules, parse_rules, rules_diff
from pacsflow.domain.errors import InvalidInput
from pacsflow.domain.routing import Rule, RuleSet, Trigger, destinations_for
from pacsflow.domain.routing_conditions import (
    CONTEXT_FIELDS,
    MAX_REGEX_LENGTH,
    Condition,
    Operator,
    RoutingContext,
)
from pacsflow.domain.routing_diff import RouteDifference, dry_run

EXAMPLE = """
rules:
  - name: ct-to-archive
    description: CT studies from the main campus go to the long-term archive
    trigger: instance
    when:
      Modality: {in: [CT, PT]}
      BodyPartExamined: {exists: true}
      StudyDescription: {wildcard: "*HEAD*"}
      InstitutionName: {regex: "^Main"}
      SliceThickness: {range: [0.5, 2.0]}
      calling_ae: {equals: CT_SCANNER_1}
      time_of_day: {range: ["08:00", "18:00"]}
      priority: {in: [STAT, ASAP]}
    send_to: [ORTHANC, STOW_ARCHIVE]
    enabled: true
  - name: everything-when-stable
    trigger: study_stable
    send_to: [BACKUP]
"""


def ctx(
    attributes: dict[str, tuple[str, ...] | str] | None = None, /, **context: object
) -> RoutingContext:
    """A routing context from keyword -> values (a bare string is one value)."""
    attrs = {k: (v,) if isinstance(v, str) else v for k, v in (attributes or {}).items()}
    return RoutingContext(attributes=attrs, **context)  # type: ignore[arg-type]


def when(yaml_conditions: str) -> Rule:
    """The single rule of a set whose ``when`` block is the given flow mapping."""
    rules = parse_rules(f"rules: [{{name: r, send_to: [DEST], when: {yaml_conditions}}}]")
    return rules.rules[0]


def one(rule_yaml: str) -> Condition:
    """The single condition of a ``when`` flow mapping."""
    (condition,) = when(rule_yaml).conditions
    return condition


def parse_error(text: str) -> str:
    with pytest.raises(InvalidInput) as info:
        parse_rules(text)
    return str(info.value)


def single_rule(body: str) -> str:
    return f"rules:\n  - name: the-rule\n    send_to: [DEST]\n{body}"


# --- the format ---------------------------------------------------------------------------


def test_the_documented_example_parses_into_rules():
    rules = parse_rules(EXAMPLE)
    first, second = rules.rules
    assert first.name == "ct-to-archive"
    assert first.description.startswith("CT studies")
    assert first.trigger is Trigger.INSTANCE
    assert first.destinations == ("ORTHANC", "STOW_ARCHIVE")
    assert [(c.field, c.operator) for c in first.conditions] == [
        ("Modality", Operator.IN),
        ("BodyPartExamined", Operator.EXISTS),
        ("StudyDescription", Operator.WILDCARD),
        ("InstitutionName", Operator.REGEX),
        ("SliceThickness", Operator.RANGE),
        ("calling_ae", Operator.EQUALS),
        ("time_of_day", Operator.RANGE),
        ("priority", Operator.IN),
    ]
    assert first.conditions[4].value == (0.5, 2.0)
    assert second == Rule("everything-when-stable", (), ("BACKUP",), Trigger.STUDY_STABLE)


def test_json_is_accepted():
    text = '{"rules": [{"name": "a", "when": {"Modality": {"in": ["CT"]}}, "send_to": ["X"]}]}'
    assert parse_rules(text) == RuleSet(
        (Rule("a", (Condition("Modality", Operator.IN, ("CT",)),), ("X",)),)
    )


def test_defaults_are_instance_trigger_enabled_no_description():
    (rule,) = parse_rules("rules: [{name: a, send_to: [X]}]").rules
    assert rule == Rule("a", (), ("X",), Trigger.INSTANCE, enabled=True, description="")


def test_an_empty_rule_set_is_written_as_an_empty_list():
    assert parse_rules("rules: []") == RuleSet(())
    assert parse_rules(dump_rules(RuleSet(()))) == RuleSet(())


def test_scalar_shorthand_means_equals():
    assert one("{Modality: CT}") == Condition("Modality", Operator.EQUALS, "CT")


def test_list_shorthand_means_in():
    assert one("{Modality: [CT, MR]}") == Condition("Modality", Operator.IN, ("CT", "MR"))


def test_a_single_destination_may_be_written_without_a_list():
    (rule,) = parse_rules("rules: [{name: a, send_to: ORTHANC}]").rules
    assert rule.destinations == ("ORTHANC",)


def test_null_when_means_always():
    (rule,) = parse_rules("rules:\n- name: a\n  when:\n  send_to: [X]\n").rules
    assert rule.conditions == ()
    assert rule.matches(ctx())


def test_values_are_read_as_written_not_as_yaml_1_1_numbers_or_booleans():
    rule = when(
        "{AccessionNumber: 0012, BurnedInAnnotation: NO, SeriesNumber: 7, PatientWeight: 70.50}"
    )
    assert [c.value for c in rule.conditions] == ["0012", "NO", "7", "70.50"]


def test_unquoted_times_are_text_not_sexagesimal_numbers():
    assert one("{time_of_day: {range: [08:00, 18:00]}}").value == ("08:00", "18:00")


def test_unquoted_numbers_in_a_range_are_numbers_and_quoted_ones_text():
    assert one("{SliceThickness: {range: [1, 2.5]}}").value == (1, 2.5)
    assert one('{StudyDate: {range: ["20240101", null]}}').value == ("20240101", None)


def test_padding_around_values_and_names_is_dropped():
    (rule,) = parse_rules(
        'rules: [{name: " a ", send_to: [" X "], when: {Modality: " CT "}}]'
    ).rules
    assert rule.name == "a"
    assert rule.destinations == ("X",)
    assert rule.conditions[0].value == "CT"


def test_dump_is_canonical_full_form():
    rules = parse_rules(
        "rules: [{name: a, when: {Modality: CT, SeriesNumber: [1, 2]}, send_to: X}]"
    )
    assert dump_rules(rules) == (
        "rules:\n"
        "  - name: a\n"
        "    trigger: instance\n"
        "    when:\n"
        "      Modality: {equals: CT}\n"
        "      SeriesNumber: {in: ['1', '2']}\n"
        "    send_to: [X]\n"
        "    enabled: true\n"
    )


def test_dump_keeps_text_that_looks_like_another_type_quoted():
    rules = parse_rules(
        "rules: [{name: a, send_to: [X], when: "
        "{PatientSex: 'true', AccessionNumber: '0012', StudyID: 'null', Modality: 'yes'}}]"
    )
    assert parse_rules(dump_rules(rules)) == rules


def test_dump_writes_multi_line_descriptions_as_blocks():
    rules = RuleSet((Rule("a", (), ("X",), description="first line\nsecond line\n"),))
    text = dump_rules(rules)
    assert "description: |\n      first line\n      second line\n" in text
    assert parse_rules(text) == rules


def test_the_example_survives_dump_and_parse():
    rules = parse_rules(EXAMPLE)
    assert parse_rules(dump_rules(rules)) == rules


# --- parse errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the rules are empty"),
        ("rules: [", "not valid YAML"),
        ("- a\n- b", "the rule set must be a mapping"),
        ("rules: []\nversion: 2", "only the key 'rules'"),
        ("rules: 3", "rules must be a list"),
        ("rules: [3]", "rule 1: a rule must be a mapping"),
        ("rules: [{send_to: [X]}]", "rule 1: a rule needs a name"),
        ("rules: [{name: a}]", "rule 1 ('a'): send_to is missing"),
        ("rules: [{name: a, send_to: []}]", "rule 1 ('a'): send_to needs at least one destination"),
        ("rules: [{name: a, send_to: [X, x]}]", "a destination is listed twice"),
        ("rules: [{name: a, send_to: [X], colour: red}]", "unknown key 'colour'"),
        ("rules: [{name: a, send_to: [X], trigger: hourly}]", "unknown trigger 'hourly'"),
        ("rules: [{name: a, send_to: [X], enabled: yes}]", "enabled must be true or false"),
        ("rules: [{name: null, send_to: [X]}]", "name needs text, not null"),
        (
            "rules: [{name: a, send_to: [X]}, {name: A, send_to: [Y]}]",
            "rule 2 ('A'): the name is already used by rule 1",
        ),
        ("rules: [{name: a, send_to: [X], when: [Modality]}]", "when must be a mapping"),
        (
            "rules: [{name: a, send_to: [X], when: {modality: CT}}]",
            "'modality' is neither a DICOM keyword nor one of called_ae",
        ),
        (
            "rules: [{name: a, send_to: [X], when: {Modality: {equal: CT}}}]",
            "Modality: unknown operator 'equal' (expected one of equals, in, wildcard",
        ),
        (
            "rules: [{name: a, send_to: [X], when: {Modality: {equals: CT, in: [MR]}}}]",
            "Modality needs exactly one operator",
        ),
        (
            "rules: [{name: a, send_to: [X], when: {Modality: CT, Modality: MR}}]",
            "when has the key 'Modality' twice",
        ),
        ("rules: [{name: a, send_to: [X], when: {Modality: true}}]", "a bare 'true' is ambiguous"),
        ("rules: [{name: a, send_to: [X], when: {Modality: null}}]", "a bare 'null' is ambiguous"),
        (
            "rules: [{name: a, send_to: [X], when: {Modality: {equals: ''}}}]",
            "needs a non-empty value (use exists: false for empty)",
        ),
        (
            "rules: [{name: a, send_to: [X], when: {Modality: {in: []}}}]",
            "needs at least one value",
        ),
        ("rules: [{name: a, send_to: [X], when: {Modality: {in: CT}}}]", "in must be a list"),
        (
            "rules: [{name: a, send_to: [X], when: {Modality: {exists: 1}}}]",
            "exists needs true or false",
        ),
        ("rules: [{name: a, send_to: [X], when: {Modality: {regex: '('}}}]", "invalid pattern"),
        (
            "rules: [{name: a, send_to: [X], when: {Modality: {regex: '(a+)+$'}}}]",
            "repeats a group that itself repeats",
        ),
        (
            "rules: [{name: a, send_to: [X], when: {SliceThickness: {range: [1]}}}]",
            "needs exactly two ends",
        ),
        (
            "rules: [{name: a, send_to: [X], when: {SliceThickness: {range: 1}}}]",
            "needs [low, high]",
        ),
        (
            "rules: [{name: a, send_to: [X], when: {SliceThickness: {range: [null, null]}}}]",
            "two open ends",
        ),
        (
            "rules: [{name: a, send_to: [X], when: {SliceThickness: {range: [2, 1]}}}]",
            "is empty: 2 is after 1",
        ),
        (
            "rules: [{name: a, send_to: [X], when: {SliceThickness: {range: [1, 'x']}}}]",
            "mixes a number and a text end",
        ),
        (
            "rules: [{name: a, send_to: [X], when: {SliceThickness: {range: [true, 2]}}}]",
            "True is not a number, a text or null",
        ),
        (
            "rules: [{name: a, send_to: [X], when: {time_of_day: {range: ['25:00', null]}}}]",
            "'25:00' is not a time of day",
        ),
        (
            "rules: [{name: a, send_to: [X], when: {time_of_day: {equals: '08:00'}}}]",
            "time_of_day takes only range or exists",
        ),
        ("rules: [{name: a, send_to: [X], when: {Modality: !custom CT}}]", "unsupported tag"),
    ],
)
def test_parse_errors_name_the_problem(text, message):
    assert message in parse_error(text)


def test_parse_errors_name_the_rule_by_position_and_name_and_the_line():
    text = single_rule("    when:\n      Modality: {equal: CT}\n")
    message = parse_error(text)
    assert message.startswith("rule 1 ('the-rule'): Modality: unknown operator")
    assert message.endswith("(line 5)")


def test_parse_errors_carry_the_rule_location():
    with pytest.raises(InvalidInput) as info:
        parse_rules("rules: [{name: a, send_to: [X]}, {name: b, send_to: []}]")
    assert info.value.location == "rules[1]"


def test_an_overlong_regex_is_refused():
    pattern = "a" * (MAX_REGEX_LENGTH + 1)
    assert "longer than" in parse_error(
        f"rules: [{{name: a, send_to: [X], when: {{Modality: {{regex: {pattern}}}}}}}]"
    )


@pytest.mark.parametrize("pattern", ["(a*)*", "(x?y+){2,}", "((ab)+c)+", "(?:a|b+)*", "([a-z]+)+"])
def test_nested_repeats_are_refused(pattern):
    with pytest.raises(InvalidInput, match="repeats a group"):
        Condition("StudyDescription", Operator.REGEX, pattern)


@pytest.mark.parametrize(
    "pattern", ["(CT|MR)+", "^(ab)+$", "[(a+)]+", r"\(a+\)+", "(a+)?", "(a+){1}"]
)
def test_single_repeats_are_accepted(pattern):
    assert Condition("StudyDescription", Operator.REGEX, pattern).value == pattern


def test_a_keyword_checker_can_be_injected():
    known = {"Modality"}.__contains__
    assert parse_rules("rules: [{name: a, send_to: [X], when: {Modality: CT}}]", is_keyword=known)
    text = "rules: [{name: a, send_to: [X], when: {Modalty: CT}}]"
    assert parse_rules(text).rules  # CamelCase passes the default check
    with pytest.raises(InvalidInput, match="'Modalty' is neither a DICOM keyword"):
        parse_rules(text, is_keyword=known)


def test_constructors_refuse_what_the_parser_refuses():
    with pytest.raises(InvalidInput, match="unknown operator"):
        Condition("Modality", "like", "CT")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="neither a DICOM keyword"):
        Condition("not a field", Operator.EQUALS, "CT")
    with pytest.raises(InvalidInput, match="needs text"):
        Condition("SeriesNumber", Operator.EQUALS, 1)
    with pytest.raises(InvalidInput, match="more than one condition on Modality"):
        Rule(
            "a",
            (
                Condition("Modality", Operator.EQUALS, "CT"),
                Condition("Modality", Operator.EXISTS, True),
            ),
            ("X",),
        )
    with pytest.raises(InvalidInput, match="name without surrounding spaces"):
        Rule(" a", (), ("X",))
    with pytest.raises(InvalidInput, match="control characters"):
        Rule("a\nb", (), ("X",))
    with pytest.raises(InvalidInput, match="invalid destination"):
        Rule("a", (), ("",))
    with pytest.raises(InvalidInput, match="is used twice"):
        RuleSet((Rule("a", (), ("X",)), Rule("A", (), ("Y",))))


def test_constructors_normalise_lists_and_padding():
    condition = Condition("Modality", Operator.IN, [" CT", "MR "])
    assert condition == Condition("Modality", Operator.IN, ("CT", "MR"))
    assert Condition("SliceThickness", Operator.RANGE, [1, None]).value == (1, None)
    assert Rule("a", [], ["X"], "study_stable").trigger is Trigger.STUDY_STABLE  # type: ignore[arg-type]


# --- operators ---------------------------------------------------------------------------


def test_equals_strips_dicom_padding_and_is_case_sensitive():
    condition = Condition("Modality", Operator.EQUALS, "CT")
    assert condition.matches(ctx({"Modality": "CT "}))
    assert condition.matches(ctx({"Modality": " CT\x00"}))
    assert not condition.matches(ctx({"Modality": "ct"}))
    assert not condition.matches(ctx({"Modality": "CTA"}))
    assert not condition.matches(ctx())


def test_in_matches_any_listed_value_case_sensitively():
    condition = Condition("Modality", Operator.IN, ("CT", "PT"))
    assert condition.matches(ctx({"Modality": "PT"}))
    assert not condition.matches(ctx({"Modality": "MR"}))
    assert not condition.matches(ctx({"Modality": "pt"}))


def test_multi_valued_attributes_match_if_any_value_matches():
    condition = Condition("ModalitiesInStudy", Operator.EQUALS, "PT")
    assert condition.matches(ctx({"ModalitiesInStudy": ("CT", "PT")}))
    assert Condition("ModalitiesInStudy", Operator.IN, ("MR", "PT")).matches(
        ctx({"ModalitiesInStudy": ("CT", "PT")})
    )
    assert not condition.matches(ctx({"ModalitiesInStudy": ("CT", "SR")}))


def test_a_bare_string_attribute_is_one_value_not_characters():
    context = RoutingContext(attributes={"Modality": "CT"})  # type: ignore[dict-item]
    assert Condition("Modality", Operator.EQUALS, "CT").matches(context)
    assert not Condition("Modality", Operator.EQUALS, "C").matches(context)


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("*HEAD*", "CT head w/o contrast", True),
        ("*HEAD*", "HEAD", True),
        ("*HEAD*", "CHEST", False),
        ("CT?", "CTA", True),
        ("CT?", "CT", False),
        ("CT?", "CTAB", False),
        ("*", "anything", True),
        ("a*b*c", "aXXbYYc", True),
        ("a*b*c", "aXXcYYb", False),
        ("**x", "x", True),
        ("exact", "EXACT", True),
        ("exact", "exactly", False),
    ],
)
def test_wildcard_matches_the_whole_value_case_insensitively(pattern, value, expected):
    condition = Condition("StudyDescription", Operator.WILDCARD, pattern)
    assert condition.matches(ctx({"StudyDescription": value})) is expected


def test_wildcard_treats_regex_characters_literally():
    condition = Condition("StudyDescription", Operator.WILDCARD, "a.b[1]*")
    assert condition.matches(ctx({"StudyDescription": "A.B[1] xyz"}))
    assert not condition.matches(ctx({"StudyDescription": "axb1"}))


def test_regex_searches_and_is_case_sensitive_unless_asked():
    condition = Condition("InstitutionName", Operator.REGEX, "^Main")
    assert condition.matches(ctx({"InstitutionName": "Main Campus"}))
    assert not condition.matches(ctx({"InstitutionName": "The Main Campus"}))
    assert not condition.matches(ctx({"InstitutionName": "main campus"}))
    assert Condition("InstitutionName", Operator.REGEX, "Campus").matches(
        ctx({"InstitutionName": "Main Campus East"})
    )
    assert Condition("InstitutionName", Operator.REGEX, "(?i)^main").matches(
        ctx({"InstitutionName": "MAIN"})
    )


def test_regex_looks_only_at_the_start_of_a_very_long_value():
    condition = Condition("StudyComments", Operator.REGEX, "needle")
    assert condition.matches(ctx({"StudyComments": "needle" + "x" * 5000}))
    assert not condition.matches(ctx({"StudyComments": "x" * 5000 + "needle"}))


def test_numeric_range_is_inclusive_and_numeric():
    condition = Condition("SliceThickness", Operator.RANGE, (0.5, 2))
    assert condition.matches(ctx({"SliceThickness": "0.5"}))
    assert condition.matches(ctx({"SliceThickness": "2"}))
    assert condition.matches(ctx({"SliceThickness": "1.25 "}))
    assert condition.matches(ctx({"SliceThickness": "10e-1"}))
    assert not condition.matches(ctx({"SliceThickness": "10"}))  # "10" < "2" as text
    assert not condition.matches(ctx({"SliceThickness": "0.49"}))


def test_numeric_range_ignores_values_that_are_not_numbers():
    condition = Condition("SliceThickness", Operator.RANGE, (None, 5))
    assert not condition.matches(ctx({"SliceThickness": "thin"}))
    assert condition.matches(ctx({"SliceThickness": ("thin", "-1")}))


def test_open_ended_ranges():
    at_least = Condition("PatientWeight", Operator.RANGE, (100, None))
    assert at_least.matches(ctx({"PatientWeight": "150"}))
    assert not at_least.matches(ctx({"PatientWeight": "99.9"}))
    at_most = Condition("PatientWeight", Operator.RANGE, (None, 100))
    assert at_most.matches(ctx({"PatientWeight": "-3"}))


def test_text_range_compares_lexicographically_like_dicom_dates_and_times():
    dates = Condition("StudyDate", Operator.RANGE, ("20240101", "20241231"))
    assert dates.matches(ctx({"StudyDate": "20240615"}))
    assert not dates.matches(ctx({"StudyDate": "20250101"}))
    times = Condition("StudyTime", Operator.RANGE, ("0800", "1800"))
    assert times.matches(ctx({"StudyTime": "080000.123"}))
    assert times.matches(ctx({"StudyTime": "1759"}))
    assert not times.matches(ctx({"StudyTime": "0759"}))


def test_exists_true_needs_a_non_empty_value():
    condition = Condition("BodyPartExamined", Operator.EXISTS, True)
    assert condition.matches(ctx({"BodyPartExamined": "HEAD"}))
    assert not condition.matches(ctx({"BodyPartExamined": "  "}))
    assert not condition.matches(ctx({"BodyPartExamined": ()}))
    assert not condition.matches(ctx())


def test_exists_false_means_absent_or_empty():
    condition = Condition("BodyPartExamined", Operator.EXISTS, False)
    assert condition.matches(ctx())
    assert condition.matches(ctx({"BodyPartExamined": ""}))
    assert condition.matches(ctx({"BodyPartExamined": ("", " ")}))
    assert not condition.matches(ctx({"BodyPartExamined": ("", "HEAD")}))


def test_operators_other_than_exists_never_match_an_absent_attribute():
    empty = ctx()
    for condition in (
        Condition("Modality", Operator.EQUALS, "CT"),
        Condition("Modality", Operator.IN, ("CT",)),
        Condition("Modality", Operator.WILDCARD, "*"),
        Condition("Modality", Operator.REGEX, ".*"),
        Condition("SliceThickness", Operator.RANGE, (None, 5)),
        Condition("StudyDate", Operator.RANGE, ("2024", None)),
    ):
        assert not condition.matches(empty), condition


# --- context fields ----------------------------------------------------------------------


@pytest.mark.parametrize("field", sorted(CONTEXT_FIELDS - {"time_of_day"}))
def test_context_fields_are_matched_like_attributes(field):
    condition = Condition(field, Operator.EQUALS, "VALUE")
    assert condition.matches(ctx(**{field: "VALUE "}))
    assert not condition.matches(ctx({"Modality": "VALUE"}))
    assert Condition(field, Operator.EXISTS, False).matches(ctx(**{field: " "}))


def test_context_fields_do_not_read_attributes_of_the_same_name():
    condition = Condition("calling_ae", Operator.EQUALS, "CT1")
    assert not condition.matches(ctx({"calling_ae": "CT1"}, calling_ae="OTHER"))


def test_rule_on_calling_ae_site_priority_and_procedure():
    rule = when(
        "{calling_ae: CT1, site: NORTH, priority: [STAT, ASAP], procedure_code: {wildcard: 'CTH*'}}"
    )
    base = {"calling_ae": "CT1", "site": "NORTH", "priority": "STAT", "procedure_code": "CTHEAD"}
    assert rule.matches(ctx(**base))
    assert not rule.matches(ctx(**{**base, "site": "SOUTH"}))
    assert not rule.matches(ctx(**{**base, "priority": "ROUTINE"}))
    assert not rule.matches(ctx(**{**base, "procedure_code": "MRHEAD"}))


def at(hour: int, minute: int = 0, second: int = 0) -> RoutingContext:
    return ctx(time_of_day=datetime.time(hour, minute, second))


def test_time_of_day_range_within_a_day():
    condition = Condition("time_of_day", Operator.RANGE, ("08:00", "18:00"))
    assert condition.matches(at(8))
    assert condition.matches(at(12, 30))
    assert condition.matches(at(18, 0, 59))  # "18:00" holds for the whole minute
    assert not condition.matches(at(18, 1))
    assert not condition.matches(at(7, 59, 59))
    assert not condition.matches(ctx())


def test_time_of_day_range_whose_start_is_after_its_end_wraps_midnight():
    condition = Condition("time_of_day", Operator.RANGE, ("22:00", "06:00"))
    assert condition.matches(at(22))
    assert condition.matches(at(23, 59, 59))
    assert condition.matches(at(0))
    assert condition.matches(at(6, 0, 30))
    assert not condition.matches(at(6, 1))
    assert not condition.matches(at(12))
    assert not condition.matches(at(21, 59))


def test_time_of_day_with_seconds_and_open_ends():
    assert Condition("time_of_day", Operator.RANGE, ("12:00:30", None)).matches(at(12, 0, 30))
    assert not Condition("time_of_day", Operator.RANGE, ("12:00:30", None)).matches(at(12, 0, 29))
    assert Condition("time_of_day", Operator.RANGE, (None, "06:00")).matches(at(0))
    assert not Condition("time_of_day", Operator.RANGE, (None, "06:00")).matches(at(23))


def test_time_of_day_exists_when_the_time_is_known():
    assert Condition("time_of_day", Operator.EXISTS, True).matches(at(3))
    assert Condition("time_of_day", Operator.EXISTS, False).matches(ctx())


# --- routing -----------------------------------------------------------------------------


def rule(name: str, *destinations: str, conditions: str = "", **kwargs: object) -> Rule:
    parsed = when(conditions).conditions if conditions else ()
    return Rule(name, parsed, destinations, **kwargs)  # type: ignore[arg-type]


def test_destinations_are_the_union_of_matching_rules():
    rules = RuleSet(
        (
            rule("ct", "ARCHIVE", "AI", conditions="{Modality: CT}"),
            rule("all", "ARCHIVE", "BACKUP"),
            rule("mr", "MR_VIEWER", conditions="{Modality: MR}"),
        )
    )
    assert destinations_for(rules, ctx({"Modality": "CT"}), Trigger.INSTANCE) == {
        "ARCHIVE",
        "AI",
        "BACKUP",
    }


def test_disabled_rules_do_not_route():
    rules = RuleSet((rule("off", "X", enabled=False), rule("on", "Y")))
    assert destinations_for(rules, ctx(), Trigger.INSTANCE) == {"Y"}


def test_only_rules_of_the_asked_trigger_route():
    rules = RuleSet((rule("now", "FAST"), rule("later", "SLOW", trigger=Trigger.STUDY_STABLE)))
    assert destinations_for(rules, ctx(), Trigger.INSTANCE) == {"FAST"}
    assert destinations_for(rules, ctx(), Trigger.STUDY_STABLE) == {"SLOW"}


def test_all_conditions_of_a_rule_must_hold():
    rules = RuleSet(
        (rule("ct-head", "NEURO", conditions="{Modality: CT, BodyPartExamined: HEAD}"),)
    )
    assert destinations_for(
        rules, ctx({"Modality": "CT", "BodyPartExamined": "HEAD"}), Trigger.INSTANCE
    )
    assert not destinations_for(rules, ctx({"Modality": "CT"}), Trigger.INSTANCE)


def test_a_study_is_never_sent_back_to_the_ae_it_came_from():
    rules = RuleSet((rule("fan-out", "ORTHANC", "PACS_B", "STOW"),))
    assert destinations_for(rules, ctx(calling_ae="PACS_B"), Trigger.INSTANCE) == {
        "ORTHANC",
        "STOW",
    }


def test_loop_protection_ignores_case_and_padding():
    rules = RuleSet((rule("fan-out", "Orthanc", "PACS_B"),))
    assert destinations_for(rules, ctx(calling_ae=" orthanc  "), Trigger.INSTANCE) == {"PACS_B"}


def test_no_calling_ae_removes_nothing():
    rules = RuleSet((rule("fan-out", "ORTHANC"),))
    assert destinations_for(rules, ctx(calling_ae=""), Trigger.INSTANCE) == {"ORTHANC"}


# --- dry run and diff --------------------------------------------------------------------


ACTIVE = RuleSet(
    (
        rule("ct", "ARCHIVE", conditions="{Modality: CT}"),
        rule("stable", "BACKUP", trigger=Trigger.STUDY_STABLE),
    )
)
CANDIDATE = RuleSet(
    (
        rule("ct", "ARCHIVE", "AI", conditions="{Modality: CT}"),
        rule("mr", "MR_VIEWER", conditions="{Modality: MR}"),
    )
)
STUDIES = [
    ("1.2.3.1", ctx({"Modality": "CT"})),
    ("1.2.3.2", ctx({"Modality": "MR"})),
    ("1.2.3.3", ctx({"Modality": "US"})),
]


def test_dry_run_shows_every_study_with_both_routes_and_the_difference():
    ct, mr, us = dry_run(ACTIVE, CANDIDATE, STUDIES, Trigger.INSTANCE)
    assert ct == RouteDifference("1.2.3.1", frozenset({"ARCHIVE"}), frozenset({"ARCHIVE", "AI"}))
    assert ct.added == {"AI"}
    assert ct.removed == frozenset()
    assert ct.changed
    assert mr.added == {"MR_VIEWER"}
    assert us == RouteDifference("1.2.3.3", frozenset(), frozenset())
    assert not us.changed


def test_dry_run_without_a_trigger_takes_both_triggers():
    ct, _mr, us = dry_run(ACTIVE, CANDIDATE, STUDIES)
    assert ct.active == {"ARCHIVE", "BACKUP"}
    assert ct.removed == {"BACKUP"}
    assert us.active == {"BACKUP"}
    assert us.candidate == frozenset()


def test_dry_run_of_a_set_against_itself_changes_nothing():
    assert not any(d.changed for d in dry_run(ACTIVE, ACTIVE, STUDIES))


def test_dry_run_applies_loop_protection_to_both_sets():
    (item,) = dry_run(ACTIVE, CANDIDATE, [("1.2.3.4", ctx({"Modality": "CT"}, calling_ae="AI"))])
    assert item.candidate == {"ARCHIVE"}
    assert item.active == {"ARCHIVE", "BACKUP"}


def test_dry_run_of_no_studies_is_empty():
    assert dry_run(ACTIVE, CANDIDATE, []) == []


def test_rules_diff_is_a_labelled_unified_diff_of_canonical_forms():
    old = "rules: [{name: a, send_to: [X], when: {Modality: CT}}]"
    new = "rules:\n- name: a\n  when:\n    Modality: {in: [CT, MR]}\n  send_to: X\n"
    diff = rules_diff(old, new, old_label="version 3", new_label="version 4")
    assert diff.splitlines()[:2] == ["--- version 3", "+++ version 4"]
    assert "-      Modality: {equals: CT}\n" in diff
    assert "+      Modality: {in: [CT, MR]}\n" in diff


def test_rules_diff_of_differently_written_equal_sets_is_empty():
    assert (
        rules_diff("rules: [{name: a, send_to: X}]", '{"rules": [{"name": "a", "send_to": ["X"]}]}')
        == ""
    )


def test_rules_diff_labels_default_to_old_and_new():
    diff = rules_diff("rules: []", "rules: [{name: a, send_to: X}]")
    assert diff.startswith("--- old\n+++ new\n")


def test_rules_diff_refuses_invalid_rules():
    with pytest.raises(InvalidInput):
        rules_diff("rules: []", "rules: [{name: a}]")


# --- properties --------------------------------------------------------------------------

PADDING = string.whitespace + "\x00"
unicode_chars = st.characters(exclude_categories=["Cs"])  # lone surrogates are not text
keywords = st.from_regex(r"[A-Z][A-Za-z0-9]{0,12}", fullmatch=True)
fields = keywords | st.sampled_from(sorted(CONTEXT_FIELDS - {"time_of_day"}))
any_text = st.text(unicode_chars, min_size=1, max_size=12)
values = any_text.filter(lambda s: s.strip(PADDING) != "")
names = (
    st.text(
        st.characters(categories=("L", "M", "N", "P", "S")) | st.just(" "), min_size=1, max_size=16
    )
    .map(str.strip)
    .filter(bool)
)
numbers = st.integers(-(10**20), 10**20) | st.floats(allow_nan=False, allow_infinity=False)
clock = st.builds(
    lambda h, m, s: f"{h:02d}:{m:02d}" + ("" if s is None else f":{s:02d}"),
    st.integers(0, 23),
    st.integers(0, 59),
    st.none() | st.integers(0, 59),
)


@st.composite
def ordered_pair(draw: st.DrawFn, elements: st.SearchStrategy[object]) -> tuple[object, object]:
    low, high = sorted([draw(elements), draw(elements)])  # type: ignore[type-var]
    low = draw(st.sampled_from([low, None])) if high is not None else low
    high = draw(st.sampled_from([high, None])) if low is not None else high
    return low, high


def conditions_on(field: str) -> st.SearchStrategy[Condition]:
    def make(op: Operator, value: object) -> Condition:
        return Condition(field, op, value)

    return st.one_of(
        st.builds(make, st.just(Operator.EQUALS), values),
        st.builds(make, st.just(Operator.IN), st.lists(values, min_size=1, max_size=4)),
        st.builds(make, st.just(Operator.WILDCARD), values),
        st.builds(
            make,
            st.just(Operator.REGEX),
            st.from_regex(r"\^?[A-Za-z0-9 .]{1,10}\*?\$?", fullmatch=True),
        ),
        st.builds(make, st.just(Operator.RANGE), ordered_pair(numbers)),
        st.builds(
            make, st.just(Operator.RANGE), ordered_pair(values.map(lambda s: s.strip(PADDING)))
        ),
        st.builds(make, st.just(Operator.EXISTS), st.booleans()),
    )


time_conditions = st.one_of(
    st.builds(Condition, st.just("time_of_day"), st.just(Operator.EXISTS), st.booleans()),
    st.builds(
        Condition,
        st.just("time_of_day"),
        st.just(Operator.RANGE),
        st.tuples(st.none() | clock, clock) | st.tuples(clock, st.none()),
    ),
)


@st.composite
def a_rule(draw: st.DrawFn, name: str | None = None, pool: list[str] | None = None) -> Rule:
    field_names = draw(st.lists(fields, unique=True, max_size=4))
    conditions = [draw(conditions_on(f)) for f in field_names]
    if draw(st.booleans()):
        conditions.append(draw(time_conditions))
    destination = st.sampled_from(pool) if pool else names
    return Rule(
        name=name or draw(names),
        conditions=tuple(conditions),
        destinations=tuple(
            draw(st.lists(destination, min_size=1, max_size=4, unique_by=str.casefold))
        ),
        trigger=draw(st.sampled_from(Trigger)),
        enabled=draw(st.booleans()),
        description=draw(st.text(unicode_chars, max_size=30)),
    )


@st.composite
def rule_sets(draw: st.DrawFn, pool: list[str] | None = None) -> RuleSet:
    rule_names = draw(st.lists(names, unique_by=str.casefold, max_size=5))
    return RuleSet(tuple(draw(a_rule(name, pool)) for name in rule_names))


@settings(deadline=None)
@given(rule_sets())
def test_dump_then_parse_gives_the_same_rules(rules):
    assert parse_rules(dump_rules(rules)) == rules


@settings(deadline=None)
@given(rule_sets())
def test_dump_is_stable(rules):
    assert dump_rules(parse_rules(dump_rules(rules))) == dump_rules(rules)


POOL = ["ORTHANC", "PACS_B", "STOW", "ai_node", "Viewer 1"]
attribute_values = st.lists(
    st.sampled_from(["CT", "MR", "", "  ", "HEAD", "1.5", "20240101"]), max_size=3
)
contexts = st.builds(
    RoutingContext,
    attributes=st.dictionaries(keywords, attribute_values.map(tuple), max_size=4),
    calling_ae=st.sampled_from(POOL).map(lambda s: f" {s.lower()} ")
    | st.sampled_from(POOL)
    | st.just(""),
    site=st.sampled_from(["", "NORTH", "SOUTH"]),
    priority=st.sampled_from(["", "STAT", "ROUTINE"]),
    time_of_day=st.none() | st.times(),
)


@settings(deadline=None)
@given(rule_sets(POOL), contexts, st.sampled_from(Trigger))
def test_destinations_never_include_the_calling_ae(rules, context, trigger):
    sender = context.calling_ae.strip().casefold()
    assert all(d.casefold() != sender for d in destinations_for(rules, context, trigger))


@settings(deadline=None)
@given(
    rule_sets(POOL).filter(lambda r: bool(r.rules)), contexts, st.sampled_from(Trigger), st.data()
)
def test_disabling_a_rule_routes_a_subset(rules, context, trigger, data):
    enabled = RuleSet(tuple(replace(r, enabled=True) for r in rules.rules))
    index = data.draw(st.integers(0, len(enabled.rules) - 1))
    disabled = RuleSet(tuple(replace(r, enabled=i != index) for i, r in enumerate(enabled.rules)))
    assert destinations_for(disabled, context, trigger) <= destinations_for(
        enabled, context, trigger
    )


@settings(max_examples=50, deadline=None)
@given(rule_sets(POOL), rule_sets(POOL), st.lists(contexts, max_size=4))
def test_dry_run_differences_are_consistent(active, candidate, studies):
    items = [(f"1.2.{i}", c) for i, c in enumerate(studies)]
    result = dry_run(active, candidate, items)
    assert [d.key for d in result] == [key for key, _ in items]
    for difference in result:
        assert difference.added == difference.candidate - difference.active
        assert difference.removed == difference.active - difference.candidate
        assert difference.changed == bool(difference.added or difference.removed)


@given(st.text(alphabet="ab*?", min_size=1, max_size=8), st.text(alphabet="abAB", min_size=1))
def test_wildcard_agrees_with_a_regex_translation(pattern, value):
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    expected = re.fullmatch(regex, value, re.IGNORECASE) is not None
    condition = Condition("StudyDescription", Operator.WILDCARD, pattern)
    assert condition.matches(ctx({"StudyDescription": value})) is expected
