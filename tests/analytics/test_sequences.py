"""Session sequences: the array funnel and journeys equal the per-visitor algorithms; the packed
sequences built by the rollup jobs equal the events, and follow late events and erasures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics import selectors, services
from analytics.algorithms import funnel_match, funnel_summarise, journey_graph
from analytics.models import Action, RollupWatermark, SessionSequence, Visitor
from analytics.sequences import (
    Stream,
    epoch_us,
    funnel_counts,
    funnel_reach,
    journey_graph_from_trails,
    journey_trails,
    unpack,
)
from tests.analytics.factories import build_population
from tests.sessions_app.factories import BehaviorEventFactory, UserSessionFactory

N_STEPS = 3
START = datetime(2026, 10, 30, tzinfo=UTC)

visitor_events = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=3),  # visitor
        st.integers(min_value=0, max_value=40),  # time
        st.frozensets(st.integers(min_value=0, max_value=N_STEPS - 1)),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(events=visitor_events, window=st.integers(min_value=0, max_value=40))
def test_array_funnel_equals_funnel_match(events, window):
    """Entrants and median step times of all visitors at once equal funnel_match per visitor."""
    ordered = sorted(enumerate(events), key=lambda e: (e[1][0], e[1][1], e[0]))
    # In the generated (unsorted) order: Stream.sorted() must order it as the per-visitor lists are.
    stream = Stream(
        np.array([e[0] for e in events], dtype=np.int64),
        np.array([e[1] for e in events], dtype=np.int64),
        np.arange(len(events), dtype=np.int64),
        np.array([sum(1 << k for k in e[2]) for e in events], dtype=np.int64),
    ).sorted()
    per_visitor: dict[int, list] = {}
    for _, (v, t, steps) in ordered:
        per_visitor.setdefault(v, []).append((float(t), steps))
    expected = funnel_summarise([funnel_match(s, N_STEPS, window) for s in per_visitor.values()], N_STEPS)
    got = funnel_counts(funnel_reach(stream, N_STEPS, window), N_STEPS)
    assert [c.entrants for c in got] == [r.entrants for r in expected]
    for c, r in zip(got, expected, strict=True):
        if r.median_seconds_from_previous is None:
            assert c.median_seconds_from_previous is None
        else:
            assert c.median_seconds_from_previous == pytest.approx(r.median_seconds_from_previous / 1_000_000)


paths = st.sampled_from(["/", "/a", "/b", "/c", "/d"])
sessions_strategy = st.lists(st.lists(paths, max_size=8), max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    sessions=sessions_strategy,
    direction=st.sampled_from(["next", "previous"]),
    depth=st.integers(min_value=1, max_value=4),
    top=st.integers(min_value=1, max_value=3),
)
def test_array_journeys_equal_journey_graph(sessions, direction, depth, top):
    """Nodes and links built from trail arrays equal journey_graph, ties and "(other)" included."""
    names = ["/", "/a", "/b", "/c", "/d"]
    group, code = [], []
    for s, visited in enumerate(sessions):
        group += [s] * len(visited)
        code += [names.index(p) for p in visited]
    n = len(group)
    stream = Stream(
        np.array(group, dtype=np.int64),
        np.arange(n, dtype=np.int64),
        np.arange(n, dtype=np.int64),
        np.array(code, dtype=np.int64),
    )
    trails = journey_trails(stream, page=1, direction=direction, depth=depth)
    got = journey_graph_from_trails(trails, names, page="/a", direction=direction, top=top)
    assert got == journey_graph(sessions, page="/a", direction=direction, depth=depth, top=top)


@pytest.fixture
def short_settle(settings):
    settings.ANALYTICS_ROLLUP_SETTLE = timedelta(hours=1)
    settings.ANALYTICS_CONVERSION_EVENT_TYPES = ["conversion"]
    settings.ANALYTICS_CONVERSION_EVENT_NAMES = []


@pytest.mark.django_db
def test_rollup_jobs_pack_each_closed_session_events_in_order(short_settle):
    """Sessions that started before the watermark get a sequence equal to their events in (time, id) order."""
    pop = build_population(start=START, days=2, sessions=40)
    now = START + timedelta(days=1, hours=6)
    services.rollup_advance(now=now)
    mark = RollupWatermark.objects.get(granularity="session").closed_through
    assert mark == START + timedelta(days=1, hours=5)
    actions = {a.pk: (a.event_type, a.event_name, a.page_path) for a in Action.objects.all()}
    closed = [s for s in pop.sessions if s.started_at < mark]
    expected = {}
    for s in closed:
        evs = sorted((e for e in pop.events if e.session_id == s.pk), key=lambda e: (e.timestamp, e.pk))
        if evs:
            expected[s.pk] = [(epoch_us(e.timestamp), e.pk, (e.event_type, e.event_name, e.page_path)) for e in evs]
    got = {}
    for seq in SessionSequence.objects.all():
        got[seq.session_id] = [(int(r["t"]), int(r["id"]), actions[int(r["action"])]) for r in unpack(seq.events)]
        assert seq.event_count == len(got[seq.session_id])
        held = sorted({int(r["action"]) for r in unpack(seq.events)})
        assert seq.actions == " " + " ".join(map(str, held)) + " "
        if seq.anonymous_id:
            assert Visitor.objects.get(pk=seq.visitor_id).anonymous_id == seq.anonymous_id
    assert got == expected and got
    # Idempotent: a second run writes nothing new and changes nothing.
    before = sorted(SessionSequence.objects.values_list("session_id", "events"))
    services.rollup_advance(now=now)
    assert sorted(SessionSequence.objects.values_list("session_id", "events")) == before


@pytest.mark.django_db
def test_late_events_and_erasure_reach_the_sequences(short_settle):
    """A late event in a closed hour is packed by the reconcile job; an erased session loses its sequence."""
    a = UserSessionFactory(started_at=START + timedelta(hours=1))
    BehaviorEventFactory(session=a, neuron=a.neuron, timestamp=START + timedelta(hours=1, minutes=1))
    now = START + timedelta(days=2)
    services.rollup_advance(now=now)
    assert SessionSequence.objects.get(session=a).event_count == 1
    BehaviorEventFactory(session=a, neuron=a.neuron, timestamp=START + timedelta(hours=3))
    services.rollup_reconcile(now=now)
    assert SessionSequence.objects.get(session=a).event_count == 2
    a.delete()
    assert not SessionSequence.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("filters", [{}, {"device_type": "mobile"}, {"country": "GB", "utm_source": "newsletter"}])
def test_funnel_and_journeys_read_the_same_from_sequences_and_raw_events(short_settle, filters):
    """Reports over sequences (closed), raw events (open) or both are identical, median times included."""
    build_population(start=START, days=4, sessions=160)
    scope = selectors.scope_build(start=START.date(), end=(START + timedelta(days=3)).date(), **filters)
    steps = selectors.funnel_steps_from_strings(["page:/", "event:click", "page:/checkout"])

    def reports():
        return (
            selectors.funnel_report(scope=scope, steps=steps, window=timedelta(hours=2)),
            selectors.journeys_report(scope=scope, page="/pricing", direction="previous", depth=3, top=2),
        )

    raw = reports()
    services.rollup_advance(now=START + timedelta(days=2))
    assert SessionSequence.objects.exists()
    assert reports() == raw
    services.rollup_advance(now=START + timedelta(days=9))
    assert reports() == raw
    assert raw[0]["steps"][0]["entrants"] > 0 or filters
