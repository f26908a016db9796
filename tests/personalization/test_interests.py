"""Interest arithmetic: categories of an event, exponential decay, order independence."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personalization.interests import (
    Contribution,
    contributions_from_events,
    decay_factor,
    event_categories,
    event_weight,
    weights_add,
    weights_at,
    weights_combine,
    weights_prune,
)

WEEK = timedelta(days=7)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Ev:
    page_path: str = "/"
    properties: dict[str, Any] = field(default_factory=dict)
    event_type: str = "page_view"
    event_name: str = ""
    timestamp: datetime = T0
    received_at: datetime = T0


def test_one_half_life_halves_a_weight():
    """After exactly one half-life a contribution weighs half; after two, a quarter."""
    assert decay_factor(elapsed=WEEK, half_life=WEEK) == pytest.approx(0.5)
    assert weights_at({"shoes": 4.0}, as_of=T0, at=T0 + 2 * WEEK, half_life=WEEK) == {"shoes": pytest.approx(1.0)}


def test_reading_before_as_of_never_grows_a_weight():
    """A clock behind the stored as_of reads the stored weight, not an inflated one."""
    assert weights_at({"shoes": 2.0}, as_of=T0, at=T0 - WEEK, half_life=WEEK) == {"shoes": 2.0}


def test_adding_decays_the_old_weights_to_the_new_event():
    """A view a week after another: the first counts 0.5, the second 1."""
    weights, as_of = weights_add(
        {"shoes": 1.0},
        as_of=T0,
        contributions=[Contribution("shoes", 1.0, T0 + WEEK), Contribution("hats", 3.0, T0 + WEEK)],
        half_life=WEEK,
        max_categories=10,
    )
    assert as_of == T0 + WEEK
    assert weights == {"shoes": pytest.approx(1.5), "hats": pytest.approx(3.0)}


def test_a_late_event_is_decayed_forward_to_as_of():
    """An event older than as_of adds its already-decayed weight and does not move as_of back."""
    weights, as_of = weights_add(
        {}, as_of=T0 + WEEK, contributions=[Contribution("shoes", 1.0, T0)], half_life=WEEK, max_categories=10
    )
    assert as_of == T0 + WEEK
    assert weights == {"shoes": pytest.approx(0.5)}


def test_prune_keeps_the_strongest_categories():
    """Beyond the cap the weakest categories are dropped; negligible ones always are."""
    pruned = weights_prune({"a": 3.0, "b": 2.0, "c": 1.0, "d": 1e-9}, max_categories=2)
    assert pruned == {"a": 3.0, "b": 2.0}


contribution_lists = st.lists(
    st.tuples(st.sampled_from(["shoes", "hats", "bags", "socks"]), st.floats(0.5, 3), st.integers(0, 60 * 24 * 30)),
    min_size=1,
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(items=contribution_lists, seed=st.integers(0, 1000), split=st.integers(0, 30))
def test_incremental_updates_in_any_order_equal_the_closed_form(items, seed, split):
    """Folding events in any order and any batching gives Σ amount·2^(−age/half-life)."""
    contributions = [Contribution(c, a, T0 + timedelta(minutes=m)) for c, a, m in items]
    shuffled = contributions[:]
    random.Random(seed).shuffle(shuffled)
    weights, as_of = weights_add({}, as_of=None, contributions=shuffled[:split], half_life=WEEK, max_categories=10)
    weights, as_of = weights_add(
        weights, as_of=as_of, contributions=shuffled[split:], half_life=WEEK, max_categories=10
    )
    latest = max(c.at for c in contributions)
    assert as_of == latest
    expected: dict[str, float] = {}
    for c in contributions:
        expected[c.category] = expected.get(c.category, 0.0) + c.amount * 0.5 ** ((latest - c.at) / WEEK)
    assert weights.keys() == expected.keys()
    for category, value in expected.items():
        assert weights[category] == pytest.approx(value, rel=1e-9)


def test_combining_two_vectors_equals_adding_all_their_events():
    """A merge (sum of two vectors at different as_of) equals one vector of all events."""
    a = [Contribution("shoes", 1.0, T0), Contribution("hats", 1.0, T0 + timedelta(days=1))]
    b = [Contribution("shoes", 2.0, T0 + timedelta(days=3))]
    va = weights_add({}, as_of=None, contributions=a, half_life=WEEK, max_categories=10)
    vb = weights_add({}, as_of=None, contributions=b, half_life=WEEK, max_categories=10)
    combined, as_of = weights_combine([va, vb], half_life=WEEK, max_categories=10)
    together, as_of_all = weights_add({}, as_of=None, contributions=a + b, half_life=WEEK, max_categories=10)
    assert as_of == as_of_all
    assert combined == {k: pytest.approx(v) for k, v in together.items()}


def test_explicit_category_property_wins_over_the_path():
    """`category` and `categories` properties name the topics; the path is the fallback."""
    assert event_categories(Ev(page_path="/blog/x", properties={"category": "Running Shoes"})) == ["running-shoes"]
    assert event_categories(Ev(properties={"categories": ["Hats", "hats", "Bags"]})) == ["hats", "bags"]
    assert event_categories(Ev(page_path="/shoes/trail/42")) == ["shoes"]


def test_neuron_path_rules_map_prefixes_longest_first():
    """A per-site mapping turns path prefixes into categories, the longest prefix winning."""
    rules = [("/shop/shoes/trail", "trail-running"), ("/shop/shoes", "shoes"), ("/shop", "shop")]
    assert event_categories(Ev(page_path="/shop/shoes/trail/9"), path_rules=rules) == ["trail-running"]
    assert event_categories(Ev(page_path="/shop/shoes/road"), path_rules=rules) == ["shoes"]


def test_a_blank_rule_category_ignores_pages_under_the_prefix():
    """Cart and checkout pages say nothing about tastes when the site maps them to no category."""
    rules = [("/checkout", ""), ("/shop", "shop")]
    assert event_categories(Ev(page_path="/checkout/pay"), path_rules=rules) == []
    assert event_categories(Ev(page_path="/checkout", properties={"category": "Books"}), path_rules=rules) == ["books"]


def test_ids_and_the_home_page_are_not_categories():
    """The root path, numeric ids and uuids say nothing about interests."""
    assert event_categories(Ev(page_path="/")) == []
    assert event_categories(Ev(page_path="/12345/edit")) == []
    assert event_categories(Ev(page_path="/3f2a9c1e-aaaa-bbbb/x")) == []


def test_conversions_weigh_more_than_views():
    """A purchase says more about a taste than a page view."""
    assert event_weight(Ev(event_type="conversion")) == 3.0
    assert event_weight(Ev(event_type="custom", event_name="Order Completed")) == 3.0
    assert event_weight(Ev(event_type="click")) == 1.5
    assert event_weight(Ev()) == 1.0


def test_future_client_timestamps_count_at_receipt():
    """An event stamped ahead of its receipt is counted at the receipt time."""
    future = Ev(page_path="/shoes", timestamp=T0 + timedelta(hours=5), received_at=T0)
    [contribution] = contributions_from_events([future])
    assert contribution.at == T0
