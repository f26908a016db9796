"""The segment rule language: validation with paths, and evaluation against a reference."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.api.errors import ValidationFailed
from personalization.rules import EventSpec, Facts, rule_evaluate, rule_event_specs, rule_validate


def errors_of(rule: Any) -> dict[str, list[str]]:
    with pytest.raises(ValidationFailed) as exc:
        rule_validate(rule)
    return exc.value.errors


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ([], "rule"),
        ({"all": []}, "rule.all"),
        ({"any": "x"}, "rule.any"),
        ({"all": [{"field": "device", "op": "eq", "value": "phone"}]}, "rule.all[0].value"),
        ({"not": {"field": "device", "op": "gt", "value": "mobile"}}, "rule.not.op"),
        ({"any": [{"field": "nope", "op": "eq", "value": 1}]}, "rule.any[0].field"),
        ({"all": [{"any": [{"not": {"field": "trait.plan", "op": "eq"}}]}]}, "rule.all[0].any[0].not.value"),
        ({"field": "events", "op": "gte", "value": 1}, "rule.withinDays"),
        ({"field": "events", "op": "gte", "value": -1, "withinDays": 7}, "rule.value"),
        ({"field": "country", "op": "in", "value": ["gb"]}, "rule.value"),
        ({"field": "consent.analytics", "op": "eq", "value": "yes"}, "rule.value"),
        ({"field": "consent.cookies", "op": "eq", "value": True}, "rule.field"),
        ({"field": "interest.shoes", "op": "gte", "value": float("nan")}, "rule.value"),
        ({"all": [{"field": "device", "op": "eq", "value": "mobile"}], "any": []}, "rule"),
        ({"field": "device", "op": "eq", "value": "mobile", "extra": 1}, "rule"),
        ({"field": "engagement", "op": "gte", "value": True}, "rule.value"),
    ],
)
def test_invalid_rules_name_the_bad_node(rule, path):
    """Each invalid document is refused with the path of the node at fault."""
    assert path in errors_of(rule)


def test_every_bad_node_is_reported():
    """Two bad conditions give two errors, each at its own path."""
    errors = errors_of({"all": [{"field": "x", "op": "eq", "value": 1}, {"field": "device", "op": "lt", "value": 1}]})
    assert set(errors) == {"rule.all[0].field", "rule.all[1].op"}


def test_depth_and_size_are_bounded():
    """Rules deeper than 10 levels or larger than 200 nodes are refused."""
    deep: dict[str, Any] = {"field": "identified", "op": "eq", "value": True}
    for _ in range(12):
        deep = {"not": deep}
    assert any("levels deep" in m for ms in errors_of(deep).values() for m in ms)
    wide = {"any": [{"all": [{"field": "identified", "op": "eq", "value": True}] * 50}] * 5}
    assert any("nodes" in m for ms in errors_of(wide).values() for m in ms)


def test_valid_rule_of_every_field_passes():
    """One condition on each field, with each kind of value, validates."""
    rule_validate(
        {
            "all": [
                {"field": "trait.plan", "op": "in", "value": ["pro", "team"]},
                {"field": "trait.age", "op": "gte", "value": 18},
                {"field": "trait.vip", "op": "exists", "value": True},
                {"field": "interest.shoes", "op": "gt", "value": 0.5},
                {"field": "sessionInterest.hats", "op": "lte", "value": 3},
                {"field": "events", "op": "gte", "value": 2, "withinDays": 7, "eventType": "conversion"},
                {"field": "engagement", "op": "gte", "value": 40},
                {"field": "sessionEngagement", "op": "lt", "value": 10},
                {"field": "pageViews", "op": "eq", "value": 1},
                {"field": "device", "op": "notIn", "value": ["bot"]},
                {"field": "country", "op": "eq", "value": "GB"},
                {"field": "browser", "op": "contains", "value": "chrome"},
                {"field": "utm.campaign", "op": "exists", "value": False},
                {"field": "consent.marketing", "op": "eq", "value": True},
                {"not": {"field": "identified", "op": "eq", "value": False}},
            ]
        }
    )


def test_missing_trait_semantics():
    """A trait the profile lacks makes eq/gt false and ne/notIn/exists:false true."""
    facts = Facts(traits={})
    assert not rule_evaluate({"field": "trait.plan", "op": "eq", "value": "pro"}, facts)
    assert rule_evaluate({"field": "trait.plan", "op": "ne", "value": "pro"}, facts)
    assert rule_evaluate({"field": "trait.plan", "op": "notIn", "value": ["pro"]}, facts)
    assert rule_evaluate({"field": "trait.plan", "op": "exists", "value": False}, facts)
    assert not rule_evaluate({"field": "trait.plan", "op": "gt", "value": 1}, facts)


def test_json_types_are_not_coerced():
    """true is not 1 and "1" is not 1, but 1 equals 1.0."""
    facts = Facts(traits={"flag": True, "n": 1, "s": "1"})
    assert not rule_evaluate({"field": "trait.flag", "op": "eq", "value": 1}, facts)
    assert not rule_evaluate({"field": "trait.s", "op": "eq", "value": 1}, facts)
    assert rule_evaluate({"field": "trait.n", "op": "eq", "value": 1.0}, facts)


def test_event_specs_are_collected_for_bulk_counting():
    """Every events window in a rule is found, so counts are fetched once per window."""
    rule = {
        "any": [
            {"field": "events", "op": "gte", "value": 1, "withinDays": 7},
            {"not": {"field": "events", "op": "eq", "value": 0, "withinDays": 1, "eventName": "Signup"}},
        ]
    }
    assert rule_event_specs(rule) == {EventSpec(7.0), EventSpec(1.0, None, "Signup")}


# --- property-based: random trees against a reference evaluator ---------------

# Atomic conditions with a known truth value against FACTS, computed by hand.
FACTS = Facts(
    traits={"plan": "pro", "age": 30},
    interests={"shoes": 2.0},
    session_interests={"shoes": 0.5},
    engagement=55.0,
    session_engagement=12.0,
    page_views=3,
    device="mobile",
    country="GB",
    browser="Mobile Safari",
    os="iOS",
    utm={"source": "newsletter"},
    consent={"analytics": True, "marketing": False},
    identified=True,
    event_counts={EventSpec(7.0): 4},
)
ATOMS: list[tuple[dict[str, Any], bool]] = [
    ({"field": "trait.plan", "op": "eq", "value": "pro"}, True),
    ({"field": "trait.plan", "op": "in", "value": ["free", "team"]}, False),
    ({"field": "trait.age", "op": "gte", "value": 30}, True),
    ({"field": "trait.missing", "op": "exists", "value": True}, False),
    ({"field": "interest.shoes", "op": "gt", "value": 1.5}, True),
    ({"field": "interest.hats", "op": "gt", "value": 0}, False),
    ({"field": "sessionInterest.shoes", "op": "lt", "value": 1}, True),
    ({"field": "engagement", "op": "gte", "value": 60}, False),
    ({"field": "sessionEngagement", "op": "lte", "value": 12}, True),
    ({"field": "pageViews", "op": "eq", "value": 3}, True),
    ({"field": "device", "op": "eq", "value": "desktop"}, False),
    ({"field": "country", "op": "notIn", "value": ["DE", "FR"]}, True),
    ({"field": "browser", "op": "contains", "value": "safari"}, True),
    ({"field": "os", "op": "eq", "value": "Android"}, False),
    ({"field": "utm.source", "op": "eq", "value": "newsletter"}, True),
    ({"field": "utm.campaign", "op": "exists", "value": True}, False),
    ({"field": "consent.marketing", "op": "eq", "value": True}, False),
    ({"field": "identified", "op": "eq", "value": True}, True),
    ({"field": "events", "op": "gte", "value": 4, "withinDays": 7}, True),
    ({"field": "events", "op": "gt", "value": 0, "withinDays": 7, "eventType": "conversion"}, False),
]

atoms = st.sampled_from(range(len(ATOMS))).map(lambda i: ("atom", i))
trees = st.recursive(
    atoms,
    lambda children: st.one_of(
        st.tuples(st.just("all"), st.lists(children, min_size=1, max_size=4)),
        st.tuples(st.just("any"), st.lists(children, min_size=1, max_size=4)),
        st.tuples(st.just("not"), children),
    ),
    max_leaves=25,
)


def to_rule(tree) -> dict[str, Any]:
    kind, body = tree
    if kind == "atom":
        return ATOMS[body][0]
    if kind == "not":
        return {"not": to_rule(body)}
    return {kind: [to_rule(child) for child in body]}


def reference(tree) -> bool:
    """Truth by De Morgan-free counting: all = no false child, any = some true child."""
    kind, body = tree
    if kind == "atom":
        return ATOMS[body][1]
    if kind == "not":
        return reference(body) is False
    values = [reference(child) for child in body]
    return values.count(False) == 0 if kind == "all" else values.count(True) > 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees)
def test_random_rule_trees_validate_and_agree_with_the_reference(tree):
    """Any tree of valid conditions validates and evaluates as the reference evaluator says."""
    rule = to_rule(tree)
    rule_validate(rule)
    assert rule_evaluate(rule, FACTS) is reference(tree)


@settings(max_examples=200, deadline=None)
@given(
    junk=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: (
            st.lists(c, max_size=3)
            | st.dictionaries(st.sampled_from(["all", "any", "not", "field", "op", "value", "x"]), c, max_size=3)
        ),
        max_leaves=10,
    )
)
def test_arbitrary_json_is_either_valid_or_refused_with_paths(junk):
    """Whatever JSON arrives, validation either passes or raises with paths under `rule`; it never crashes."""
    try:
        rule_validate(junk)
    except ValidationFailed as exc:
        assert exc.errors and all(path.startswith("rule") for path in exc.errors)
    else:
        rule_evaluate(junk, FACTS)
