"""The segment rule language: validation (with the path of each bad node) and evaluation.

A rule is a JSON tree:

    node      := {"all": [node, ...]}        every child holds (1..50 children)
               | {"any": [node, ...]}        at least one child holds
               | {"not": node}               the child does not hold
               | condition
    condition := {"field": FIELD, "op": OP, "value": VALUE}
               | {"field": "events", "op": OP, "value": N, "withinDays": D
                  [, "eventType": T] [, "eventName": NAME]}

Fields and their operators:

    trait.<name>            eq ne in notIn exists gt gte lt lte contains   a profile trait
    interest.<category>     gt gte lt lte    interest weight now (the profile's, else the session's)
    sessionInterest.<cat>   gt gte lt lte    interest weight of this session only
    events                  eq gt gte lt lte count of events in the last D days (profile, else session)
    engagement              gt gte lt lte    profile engagement 0..100 (else the session's)
    sessionEngagement       gt gte lt lte    this session's engagement 0..100
    pageViews               eq gt gte lt lte this session's page views
    device                  eq ne in notIn   desktop / mobile / tablet / bot / other
    country                 eq ne in notIn   ISO 3166 alpha-2, upper case
    browser, os             eq ne in notIn contains
    utm.<source|medium|campaign|term|content>   eq ne in notIn contains exists
    consent.<purpose>       eq               true / false
    identified              eq               true / false

A condition on a value that is absent (a trait the profile does not have) is
false, except `ne`, `notIn` and `exists: false`, which are true. Limits: depth
10, 200 nodes. Errors name the node, e.g. `rule.all[2].not.op`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from config.api.errors import ValidationFailed
from privacy.consent import PURPOSES
from sessions_app.models import DeviceType

MAX_DEPTH = 10
MAX_NODES = 200
MAX_CHILDREN = 50
MAX_LIST = 100
MAX_WITHIN_DAYS = 365

NUMERIC_OPS = ("gt", "gte", "lt", "lte")
COUNT_OPS = ("eq", *NUMERIC_OPS)
CHOICE_OPS = ("eq", "ne", "in", "notIn")
STRING_OPS = (*CHOICE_OPS, "contains")
TRAIT_OPS = ("eq", "ne", "in", "notIn", "exists", "gt", "gte", "lt", "lte", "contains")
UTM_KEYS = ("source", "medium", "campaign", "term", "content")

_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True)
class EventSpec:
    """An `events` condition's window and filters: what to count for each session."""

    within_days: float
    event_type: str | None = None
    event_name: str | None = None


@dataclass
class Facts:
    """Everything a rule can read about one session, gathered in bulk by the selectors."""

    traits: Mapping[str, Any] = field(default_factory=dict)
    interests: Mapping[str, float] = field(default_factory=dict)
    session_interests: Mapping[str, float] = field(default_factory=dict)
    engagement: float = 0.0
    session_engagement: float = 0.0
    page_views: int = 0
    device: str = ""
    country: str = ""
    browser: str = ""
    os: str = ""
    utm: Mapping[str, str] = field(default_factory=dict)
    consent: Mapping[str, bool] = field(default_factory=dict)
    identified: bool = False
    event_counts: Mapping[EventSpec, int] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value  # NaN is not


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | bool) or _is_number(value)


class _Validator:
    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}
        self.nodes = 0

    def fail(self, path: str, message: str) -> None:
        self.errors.setdefault(path, []).append(message)

    def node(self, node: Any, path: str, depth: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            if self.nodes == MAX_NODES + 1:
                self.fail(path, f"A rule may have at most {MAX_NODES} nodes.")
            return
        if depth > MAX_DEPTH:
            self.fail(path, f"A rule may be at most {MAX_DEPTH} levels deep.")
            return
        if not isinstance(node, dict):
            self.fail(path, "Expected an object: {all: [...]}, {any: [...]}, {not: {...}} or a condition.")
            return
        combinators = [key for key in ("all", "any", "not") if key in node]
        if combinators:
            key = combinators[0]
            if len(node) != 1:
                self.fail(path, f"A '{key}' node has exactly one key; found {sorted(node)}.")
                return
            if key == "not":
                self.node(node["not"], f"{path}.not", depth + 1)
                return
            children = node[key]
            if not isinstance(children, list) or not children:
                self.fail(f"{path}.{key}", "Expected a non-empty list of rules.")
                return
            if len(children) > MAX_CHILDREN:
                self.fail(f"{path}.{key}", f"At most {MAX_CHILDREN} rules per list.")
                return
            for index, child in enumerate(children):
                self.node(child, f"{path}.{key}[{index}]", depth + 1)
            return
        self.condition(node, path)

    def condition(self, node: dict[str, Any], path: str) -> None:
        name = node.get("field")
        if not isinstance(name, str):
            self.fail(f"{path}.field", "Expected a field name (or one of all / any / not).")
            return
        op = node.get("op")
        extra_keys = {"withinDays", "eventType", "eventName"} if name == "events" else set()
        unknown = sorted(set(node) - {"field", "op", "value"} - extra_keys)
        if unknown:
            self.fail(path, f"Unknown keys: {', '.join(unknown)}.")
        ops, checker = self._field(name, node, path)
        if ops is None:
            return
        if op not in ops:
            self.fail(f"{path}.op", f"Unknown operator {op!r} for {name}; expected one of {', '.join(ops)}.")
            return
        if "value" not in node:
            self.fail(f"{path}.value", "A condition needs a value.")
            return
        message = checker(op, node["value"])
        if message:
            self.fail(f"{path}.value", message)

    def _field(self, name: str, node: dict[str, Any], path: str) -> tuple[tuple[str, ...] | None, Any]:
        prefix, _, rest = name.partition(".")
        if prefix == "trait" and _NAME.match(rest):
            return TRAIT_OPS, _check_trait
        if prefix in {"interest", "sessionInterest"} and rest and len(rest) <= 64:
            return NUMERIC_OPS, _check_number
        if prefix == "utm" and rest in UTM_KEYS:
            return (*STRING_OPS, "exists"), _check_string
        if prefix == "consent" and rest in PURPOSES:
            return ("eq",), _check_bool
        if name == "events":
            self._event_spec(node, path)
            return COUNT_OPS, _check_count
        if name in {"engagement", "sessionEngagement"}:
            return NUMERIC_OPS, _check_number
        if name == "pageViews":
            return COUNT_OPS, _check_count
        if name == "device":
            return CHOICE_OPS, _check_choice(tuple(DeviceType.values))
        if name == "country":
            return CHOICE_OPS, _check_country
        if name in {"browser", "os"}:
            return STRING_OPS, _check_string
        if name == "identified":
            return ("eq",), _check_bool
        self.fail(f"{path}.field", f"Unknown field {name!r}.")
        return None, None

    def _event_spec(self, node: dict[str, Any], path: str) -> None:
        days = node.get("withinDays")
        if not _is_number(days) or not 0 < days <= MAX_WITHIN_DAYS:
            self.fail(
                f"{path}.withinDays", f"An events condition needs withinDays, a number in (0, {MAX_WITHIN_DAYS}]."
            )
        for key in ("eventType", "eventName"):
            if key in node and not (isinstance(node[key], str) and 0 < len(node[key]) <= 200):
                self.fail(f"{path}.{key}", "Expected a non-empty string of at most 200 characters.")


def _check_number(op: str, value: Any) -> str | None:
    return None if _is_number(value) else "Expected a number."


def _check_count(op: str, value: Any) -> str | None:
    return None if _is_number(value) and value >= 0 else "Expected a non-negative number."


def _check_bool(op: str, value: Any) -> str | None:
    return None if isinstance(value, bool) else "Expected true or false."


def _check_list(value: Any, item_ok: Any, what: str) -> str | None:
    if not isinstance(value, list) or not value or len(value) > MAX_LIST:
        return f"Expected a list of 1 to {MAX_LIST} {what}."
    if not all(item_ok(item) for item in value):
        return f"Every item must be {what}."
    return None


def _check_trait(op: str, value: Any) -> str | None:
    if op == "exists":
        return _check_bool(op, value)
    if op in NUMERIC_OPS:
        return _check_number(op, value)
    if op in {"in", "notIn"}:
        return _check_list(value, _is_scalar, "strings, numbers, booleans or null")
    if op == "contains":
        return None if isinstance(value, str) else "Expected a string."
    return None if _is_scalar(value) else "Expected a string, number, boolean or null."


def _check_string(op: str, value: Any) -> str | None:
    if op == "exists":
        return _check_bool(op, value)
    if op in {"in", "notIn"}:
        return _check_list(value, lambda item: isinstance(item, str), "strings")
    return None if isinstance(value, str) else "Expected a string."


def _check_choice(choices: tuple[str, ...]) -> Any:
    def check(op: str, value: Any) -> str | None:
        allowed = ", ".join(choices)
        if op in {"in", "notIn"}:
            return _check_list(value, lambda item: item in choices, f"one of {allowed}")
        return None if value in choices else f"Expected one of {allowed}."

    return check


def _check_country(op: str, value: Any) -> str | None:
    def ok(item: Any) -> bool:
        return isinstance(item, str) and bool(_COUNTRY.match(item))

    if op in {"in", "notIn"}:
        return _check_list(value, ok, "two-letter upper-case country codes")
    return None if ok(value) else "Expected a two-letter upper-case country code."


def rule_validate(rule: Any, *, path: str = "rule") -> None:
    """Raise ValidationFailed (400) naming every bad node by its path."""
    validator = _Validator()
    validator.node(rule, path, 1)
    if validator.errors:
        raise ValidationFailed(
            "The rule document is invalid; see errors for the path of each bad node.", errors=validator.errors
        )


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------


def rule_event_specs(rule: Any) -> set[EventSpec]:
    """Every `events` window a (valid) rule counts, so the selectors fetch them in bulk."""
    out: set[EventSpec] = set()
    stack = [rule]
    while stack:
        node = stack.pop()
        if "all" in node or "any" in node:
            stack.extend(node.get("all") or node.get("any"))
        elif "not" in node:
            stack.append(node["not"])
        elif node.get("field") == "events":
            out.add(event_spec_of(node))
    return out


def event_spec_of(node: Mapping[str, Any]) -> EventSpec:
    return EventSpec(
        within_days=float(node["withinDays"]), event_type=node.get("eventType"), event_name=node.get("eventName")
    )


_MISSING = object()


def _equal(a: Any, b: Any) -> bool:
    # JSON types are kept apart: true is not 1, "1" is not 1; 1 and 1.0 are equal.
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if actual is _MISSING:
        return op in {"ne", "notIn"} or (op == "exists" and expected is False)
    if op == "exists":
        return expected is True
    if op == "eq":
        return _equal(actual, expected)
    if op == "ne":
        return not _compare("eq", actual, expected)
    if op == "in":
        return any(_equal(actual, item) for item in expected)
    if op == "notIn":
        return not _compare("in", actual, expected)
    if op == "contains":
        return isinstance(actual, str) and expected.lower() in actual.lower()
    if not _is_number(actual):
        return False
    if op == "gt":
        return actual > expected
    if op == "gte":
        return actual >= expected
    if op == "lt":
        return actual < expected
    return actual <= expected  # lte


def _value(node: Mapping[str, Any], facts: Facts) -> Any:
    name: str = node["field"]
    prefix, _, rest = name.partition(".")
    if prefix == "trait":
        return facts.traits.get(rest, _MISSING)
    if prefix == "interest":
        return facts.interests.get(rest, 0.0)
    if prefix == "sessionInterest":
        return facts.session_interests.get(rest, 0.0)
    if prefix == "utm":
        return facts.utm.get(rest) or _MISSING
    if prefix == "consent":
        return bool(facts.consent.get(rest, False))
    if name == "events":
        return facts.event_counts.get(event_spec_of(node), 0)
    return {
        "engagement": facts.engagement,
        "sessionEngagement": facts.session_engagement,
        "pageViews": facts.page_views,
        "device": facts.device,
        "country": facts.country,
        "browser": facts.browser,
        "os": facts.os,
        "identified": facts.identified,
    }[name]


def rule_evaluate(rule: Mapping[str, Any], facts: Facts) -> bool:
    """Evaluate a validated rule against one session's facts."""
    if "all" in rule:
        return all(rule_evaluate(child, facts) for child in rule["all"])
    if "any" in rule:
        return any(rule_evaluate(child, facts) for child in rule["any"])
    if "not" in rule:
        return not rule_evaluate(rule["not"], facts)
    return _compare(rule["op"], _value(rule, facts), rule["value"])
