"""Funnel and retention logic against brute force over generated event streams."""

from __future__ import annotations

import itertools
from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.algorithms import funnel_match, funnel_summarise, journey_graph, retention_matrix

N_STEPS = 3

events = st.lists(
    st.tuples(st.integers(min_value=0, max_value=50), st.frozensets(st.integers(min_value=0, max_value=N_STEPS - 1))),
    max_size=9,
).map(lambda evs: sorted(evs, key=lambda e: e[0]))


def brute_depth(stream, n_steps, window) -> int:
    """The deepest step reachable by any choice of ordered events within the window."""
    best = 0
    for k in range(1, n_steps + 1):
        for positions in itertools.combinations(range(len(stream)), k):
            times = [stream[p][0] for p in positions]
            if all(i in stream[p][1] for i, p in enumerate(positions)) and times[-1] - times[0] <= window:
                best = max(best, k)
    return best


@settings(max_examples=300, deadline=None)
@given(stream=events, window=st.integers(min_value=0, max_value=60))
def test_funnel_depth_equals_exhaustive_search(stream, window):
    """The greedy earliest-match funnel reaches exactly the deepest step any ordering allows."""
    times = funnel_match(stream, N_STEPS, window)
    assert len(times) == brute_depth(stream, N_STEPS, window)
    assert times == sorted(times)
    if times:
        assert times[-1] - times[0] <= window


@settings(max_examples=200, deadline=None)
@given(streams=st.lists(events, max_size=8), window=st.integers(min_value=0, max_value=60))
def test_funnel_entrants_never_grow_and_drop_off_adds_up(streams, window):
    """Entrants shrink step by step, and drop-off is the difference between neighbouring steps."""
    summary = funnel_summarise([funnel_match(s, N_STEPS, window) for s in streams], N_STEPS)
    assert summary[0].entrants == sum(1 for s in streams if brute_depth(s, N_STEPS, window) >= 1)
    for prev, step in zip(summary, summary[1:], strict=False):
        assert step.entrants <= prev.entrants
        assert step.drop_off == prev.entrants - step.entrants


def test_funnel_median_time_is_between_chosen_steps():
    """Median times between steps use the earliest start that reaches the deepest step."""
    a = [(0, frozenset({0})), (10, frozenset({1})), (40, frozenset({2}))]
    b = [(0, frozenset({0})), (100, frozenset({0})), (120, frozenset({1}))]
    summary = funnel_summarise([funnel_match(a, 3, 60), funnel_match(b, 3, 60)], 3)
    assert [s.entrants for s in summary] == [2, 2, 1]
    assert summary[1].median_seconds_from_previous == 15  # 10 and 20 (b restarts at 100)
    assert summary[2].median_seconds_from_previous == 30


visits = st.lists(
    st.tuples(st.integers(min_value=0, max_value=6), st.integers(min_value=-3, max_value=12)), max_size=40
)


@settings(max_examples=300, deadline=None)
@given(visits=visits, n_cohorts=st.integers(min_value=1, max_value=6), n_offsets=st.integers(min_value=1, max_value=6))
def test_retention_matrix_equals_set_based_recount(visits, n_cohorts, n_offsets):
    """Each cell counts the cohort's visitors seen again exactly k periods after their first."""
    periods = defaultdict(set)
    for visitor, period in visits:
        periods[visitor].add(period)
    expected = [[0] * n_offsets for _ in range(n_cohorts)]
    for c in range(n_cohorts):
        members = [v for v, ps in periods.items() if min(ps) == c]
        for k in range(n_offsets):
            expected[c][k] = sum(1 for v in members if c + k in periods[v])
    table = retention_matrix(visits, n_cohorts, n_offsets)
    assert table == expected
    for row in table:
        assert all(cell <= row[0] for cell in row)


@settings(max_examples=200, deadline=None)
@given(
    sessions=st.lists(st.lists(st.sampled_from(["/a", "/b", "/c", "/d"]), max_size=7), max_size=15),
    depth=st.integers(min_value=1, max_value=3),
    top=st.integers(min_value=1, max_value=3),
)
def test_journey_flows_are_conserved(sessions, depth, top):
    """Every session through the page flows from level to level: links out of a node never exceed it."""
    graph = journey_graph(sessions, page="/a", direction="next", depth=depth, top=top)
    nodes = {n["id"]: n["sessions"] for n in graph["nodes"]}
    through = sum(1 for s in sessions if "/a" in s)
    assert nodes.get("0:/a", 0) == through
    out = defaultdict(int)
    for link in graph["links"]:
        out[link["source"]] += link["sessions"]
    for node, n in out.items():
        assert n <= nodes[node]
    assert out.get("0:/a", 0) == through
    named = [n for n in graph["nodes"] if n["level"] > 0 and n["page"] not in ("(exit)", "(other)")]
    for level in range(1, depth + 1):
        assert len([n for n in named if n["level"] == level]) <= top
