"""Session sequences: the array funnel and journeys equal the per-visitor algorithms; the packed
sequences built by the rollup jobs equal the events, and follow late events and erasures."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db import connections, transaction
from django.db.models import Q
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics import selectors, services
from analytics.algorithms import funnel_match, funnel_summarise, journey_graph
from analytics.day_cache import DAY_CACHE, DAY_RESULT_CACHE, DayCache, DayPayload
from analytics.models import Action, RollupWatermark, SequenceDay, SessionSequence, Visitor
from analytics.sequences import (
    DAY_HEADER_DTYPE,
    EVENT_DTYPE,
    Stream,
    epoch_us,
    funnel_counts,
    funnel_reach,
    funnel_reach_with,
    journey_graph_from_trails,
    journey_trails,
    session_trails,
    unpack,
)
from sessions_app.models import UserSession
from tests.analytics.factories import build_population
from tests.helpers import needs_postgres
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


def _by_visitor(reach) -> dict[int, tuple]:
    return {
        int(v): (int(d), tuple(reach.times[:, i]))
        for i, (v, d) in enumerate(zip(reach.visitor, reach.depth, strict=True))
    }


@settings(max_examples=300, deadline=None)
@given(
    events=visitor_events,
    window=st.integers(min_value=0, max_value=40),
    split=st.lists(st.booleans(), min_size=30, max_size=30),
)
def test_funnel_reach_with_more_events_equals_funnel_reach_of_all(events, window, split):
    """Matching a base stream once, then only the visitors with more events again, gives every
    visitor's reach of all the events (analytics.day_cache keeps the base's)."""
    group = np.array([e[0] for e in events], dtype=np.int64)
    t = np.array([e[1] for e in events], dtype=np.int64)
    code = np.array([sum(1 << k for k in e[2]) for e in events], dtype=np.int64)
    ids = np.arange(len(events), dtype=np.int64)
    in_base = np.array(split[: len(events)], dtype=bool)
    base = Stream(group[in_base], t[in_base], ids[in_base], code[in_base]).sorted().frozen()
    more = Stream(group[~in_base], t[~in_base], ids[~in_base], code[~in_base])
    whole = funnel_reach(Stream(group, t, ids, code).sorted(), N_STEPS, window)
    got = funnel_reach_with(base, funnel_reach(base, N_STEPS, window), more, N_STEPS, window)
    assert _by_visitor(got) == _by_visitor(whole)
    assert sorted(got.visitor.tolist()) == sorted(whole.visitor.tolist())  # each visitor once


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


@settings(max_examples=200, deadline=None)
@given(
    sessions=sessions_strategy,
    direction=st.sampled_from(["next", "previous"]),
    depth=st.integers(min_value=1, max_value=4),
    split=st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_trails_of_two_session_sets_merge_into_those_of_both(sessions, direction, depth, split):
    """Sessions are traced on their own: the trails of two sets of sessions, put in session order,
    are the trails of all of them (how journeys add the recent sessions to the closed days')."""
    names = ["/", "/a", "/b", "/c", "/d"]

    def stream(chosen: list[int]) -> Stream:
        group = [s for s in chosen for _ in sessions[s]]
        code = [names.index(p) for s in chosen for p in sessions[s]]
        n = len(group)
        return Stream(np.array(group, dtype=np.int64), np.arange(n), np.arange(n), np.array(code, dtype=np.int64))

    everyone = list(range(len(sessions)))
    first = [s for s in everyone if split[s]]
    second = [s for s in everyone if not split[s]]
    a_sessions, a_trails = session_trails(stream(first), page=1, direction=direction, depth=depth)
    b_sessions, b_trails = session_trails(stream(second), page=1, direction=direction, depth=depth)
    order = np.argsort(np.concatenate([a_sessions, b_sessions]), kind="stable")
    whole_sessions, whole = session_trails(stream(everyone), page=1, direction=direction, depth=depth)
    assert np.concatenate([a_sessions, b_sessions])[order].tolist() == whole_sessions.tolist()
    assert np.concatenate([a_trails, b_trails])[order].tolist() == whole.tolist()


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
    """A late event in a closed hour is packed by the reconcile job, into the sequence and its day's row;
    an erased session loses its sequence."""
    a = UserSessionFactory(started_at=START + timedelta(hours=1))
    BehaviorEventFactory(session=a, neuron=a.neuron, timestamp=START + timedelta(hours=1, minutes=1))
    now = START + timedelta(days=2)
    services.rollup_advance(now=now)
    assert SessionSequence.objects.get(session=a).event_count == 1
    assert len(unpack(_day_sessions(SequenceDay.objects.get(day=START))[a.pk][4])) == 1
    BehaviorEventFactory(session=a, neuron=a.neuron, timestamp=START + timedelta(hours=3))
    services.rollup_reconcile(now=now)
    assert SessionSequence.objects.get(session=a).event_count == 2
    row = SequenceDay.objects.get(day=START)
    assert not row.stale and len(unpack(_day_sessions(row)[a.pk][4])) == 2
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


def _session_with_events(*, started: datetime, ended: datetime | None, paths: list[str]):
    session = UserSessionFactory(
        started_at=started,
        last_activity_at=ended or started,
        expires_at=(ended or started) + timedelta(minutes=30),
        ended_at=ended,
    )
    for i, path in enumerate(paths):
        BehaviorEventFactory(
            session=session,
            neuron=session.neuron,
            event_type="page_view",
            page_path=path,
            timestamp=started + timedelta(minutes=i),
        )
    return session


@pytest.mark.django_db
def test_sessions_that_ended_get_their_sequence_before_their_hour_closes(short_settle):
    """A session that ended more than the events grace period ago is packed before the watermark
    reaches its hour; live and just-ended ones are not. Reports read the same before and after."""
    now = START + timedelta(days=2)
    build_population(start=START, days=2, sessions=60)
    services.rollup_advance(now=now)
    mark = RollupWatermark.objects.get(granularity="session").closed_through
    done = _session_with_events(
        started=now - timedelta(minutes=50), ended=now - timedelta(minutes=20), paths=["/", "/pricing", "/"]
    )
    recent = _session_with_events(
        started=now - timedelta(minutes=40), ended=now - timedelta(minutes=3), paths=["/", "/pricing"]
    )
    live = _session_with_events(started=now - timedelta(minutes=45), ended=None, paths=["/pricing", "/"])
    assert min(s.started_at for s in (done, recent, live)) >= mark
    scope = selectors.scope_build(start=START.date(), end=(START + timedelta(days=2)).date())
    steps = selectors.funnel_steps_from_strings(["page:/", "page:/pricing"])

    def reports():
        return (
            selectors.funnel_report(scope=scope, steps=steps, window=timedelta(hours=2)),
            selectors.journeys_report(scope=scope, page="/pricing", direction="next", depth=2, top=3),
        )

    before = reports()
    cut = now - timedelta(minutes=6)  # the events grace period (5 minutes) and the margin
    due = {s.pk for s in UserSession.objects.filter(started_at__gte=mark, ended_at__lt=cut) if s.events.exists()}
    assert done.pk in due and recent.pk not in due and live.pk not in due
    assert services.sequences_build_ended(now=now) == len(due)
    assert set(SessionSequence.objects.filter(started_at__gte=mark).values_list("session_id", flat=True)) == due
    sequence = SessionSequence.objects.get(session=done)
    assert [int(e["id"]) for e in unpack(sequence.events)] == list(
        done.events.order_by("timestamp", "pk").values_list("pk", flat=True)
    )
    # Their events are read from the sequence, no longer raw (both would count the session twice
    # in any report that is not a set of visitors or of first views).
    raw_sessions = {row[0] for row in selectors._open_rows(scope, mark, Q(), by="session")}
    assert done.pk not in raw_sessions and {recent.pk, live.pk} <= raw_sessions
    assert reports() == before
    assert services.sequences_build_ended(now=now) == 0  # nothing new to write
    # When the watermark passes their hour, the early sequence is rewritten like any other.
    services.rollup_advance(now=now + timedelta(days=2))
    assert bytes(SessionSequence.objects.get(session=done).events) == bytes(sequence.events)
    assert reports() == before


@pytest.mark.django_db
def test_no_early_sequences_before_the_first_rollup_run(short_settle):
    """Without a sequence watermark every session is read raw; nothing is written early."""
    _session_with_events(started=START, ended=START + timedelta(minutes=5), paths=["/"])
    assert services.sequences_build_ended(now=START + timedelta(days=1)) == 0
    assert not SessionSequence.objects.exists()


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_an_early_sequence_waits_for_an_ingest_still_holding_the_session(short_settle):
    """An ingest transaction that locked the session before the build started commits first:
    its event is in the sequence."""
    now = timezone.now()
    services.rollup_advance(now=now - timedelta(hours=2))  # the watermark before the session below
    session = _session_with_events(started=now - timedelta(minutes=50), ended=now - timedelta(minutes=20), paths=["/"])
    locked = threading.Event()
    errors: list[BaseException] = []

    def ingest() -> None:
        try:
            with transaction.atomic():
                UserSession.objects.select_for_update().get(pk=session.pk)
                locked.set()
                time.sleep(0.5)
                BehaviorEventFactory(session=session, neuron=session.neuron, timestamp=now - timedelta(minutes=21))
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=ingest)
    thread.start()
    assert locked.wait(timeout=10)
    assert services.sequences_build_ended(now=now) == 1
    thread.join(timeout=30)
    assert not errors, errors
    assert SessionSequence.objects.get(session=session).event_count == 2


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_funnels_read_sequences_and_open_sessions_from_one_snapshot(short_settle):
    """A sequence written while a report reads is invisible to the rest of that read: the report
    counts the session once, from its raw events, instead of twice or not at all."""
    now = timezone.now()
    services.rollup_advance(now=now - timedelta(hours=2))  # the watermark before the session below
    _session_with_events(started=now - timedelta(minutes=50), ended=now - timedelta(minutes=20), paths=["/"])
    written: list[int] = []

    def build() -> None:
        try:
            written.append(services.sequences_build_ended(now=now))
        finally:
            connections.close_all()

    with selectors._one_snapshot():
        assert SessionSequence.objects.count() == 0
        thread = threading.Thread(target=build)
        thread.start()
        thread.join(timeout=30)
        assert written == [1]
        assert SessionSequence.objects.count() == 0  # still the snapshot taken at the first read
    assert SessionSequence.objects.count() == 1


def _day_sessions(day_row: SequenceDay) -> dict[int, tuple]:
    """A SequenceDay decoded: session id -> (visitor key, device type, country, UTM source, packed events)."""
    header = np.frombuffer(bytes(day_row.headers), dtype=DAY_HEADER_DTYPE)
    events = bytes(day_row.events)
    out, at = {}, 0
    for h in header:
        size = int(h["count"]) * EVENT_DTYPE.itemsize
        out[int(h["session"])] = (
            int(h["visitor"]),
            day_row.labels["device_type"][h["device_type"]],
            day_row.labels["country"][h["country"]],
            day_row.labels["utm_source"][h["utm_source"]],
            events[at : at + size],
        )
        at += size
    assert at == len(events)
    assert list(out) == sorted(out)  # in session order
    return out


def _expected_day(neuron_id: int, day: datetime) -> dict[int, tuple]:
    return {
        s.session_id: (
            s.visitor_id if s.visitor_id is not None else -s.session_id,
            s.device_type,
            s.country,
            s.utm_source,
            bytes(s.events),
        )
        for s in SessionSequence.objects.filter(
            neuron_id=neuron_id, started_at__gte=day, started_at__lt=day + timedelta(days=1)
        ).order_by("session_id")
    }


@pytest.mark.django_db
def test_each_closed_day_has_its_sequences_in_one_row(short_settle):
    """Days wholly before the sequence watermark get a SequenceDay holding their sequences in
    session order, with each session's filter values; later days have none yet."""
    build_population(start=START, days=4, sessions=120)
    services.rollup_advance(now=START + timedelta(days=3, hours=6))
    assert RollupWatermark.objects.get(granularity="seq_days").closed_through == START + timedelta(days=3)
    rows = list(SequenceDay.objects.order_by("neuron_id", "day"))
    assert rows and all(r.day < START + timedelta(days=3) and not r.stale for r in rows)
    closed = SessionSequence.objects.filter(started_at__lt=START + timedelta(days=3))
    days = {(n, services.floor_day(d)) for n, d in closed.values_list("neuron_id", "started_at")}
    assert {(r.neuron_id, r.day) for r in rows} == days
    for row in rows:
        assert _day_sessions(row) == _expected_day(row.neuron_id, row.day)
        assert row.session_count == len(_expected_day(row.neuron_id, row.day))
    # Idempotent: another run rewrites nothing that differs.
    before = [(r.pk, bytes(r.events)) for r in rows]
    services.rollup_advance(now=START + timedelta(days=3, hours=6))
    assert [(r.pk, bytes(r.events)) for r in SequenceDay.objects.order_by("neuron_id", "day")] == before


@pytest.mark.django_db
def test_erasing_a_session_blanks_its_day_until_the_next_run(short_settle):
    """Deleting a session blanks its day's row in the same transaction; reports read that day from
    the remaining sequences (still equal to a recount), and the next run rebuilds the row without it."""
    pop = build_population(start=START, days=3, sessions=90)
    now = START + timedelta(days=2, hours=6)
    services.rollup_advance(now=now)
    scope = selectors.scope_build(start=START.date(), end=(START + timedelta(days=2)).date())
    steps = selectors.funnel_steps_from_strings(["page:/", "event:click"])
    victim = next(s for s in pop.sessions if SessionSequence.objects.filter(session_id=s.pk).exists())
    day = victim.started_at.replace(hour=0, minute=0, second=0, microsecond=0)
    row = SequenceDay.objects.get(neuron_id=victim.neuron_id, day=day)
    assert victim.pk in _day_sessions(row)
    with transaction.atomic():
        UserSession.objects.filter(pk=victim.pk).delete()
        row.refresh_from_db()
        assert row.stale and bytes(row.events) == b"" and bytes(row.headers) == b""

    def reports():
        return (
            selectors.funnel_report(scope=scope, steps=steps, window=timedelta(hours=2)),
            selectors.journeys_report(scope=scope, page="/pricing", direction="next", depth=2, top=3),
        )

    from_stale = reports()
    SequenceDay.objects.all().delete()
    RollupWatermark.objects.filter(granularity="seq_days").delete()
    assert reports() == from_stale  # what every session's own sequence says
    services.rollup_advance(now=now)
    row = SequenceDay.objects.get(neuron_id=victim.neuron_id, day=day)
    assert not row.stale and victim.pk not in _day_sessions(row)
    assert _day_sessions(row) == _expected_day(victim.neuron_id, day)
    assert reports() == from_stale


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_day_rows_are_fetched_once_per_row_version(short_settle, settings):
    """The process keeps day rows' payloads while the rows are unchanged (analytics.day_cache):
    a second report fetches none; a blanked row is read from its sessions' sequences and the
    rebuilt one fetched again; every report equals the reading without the cache. Committed
    transactions: a row version is named by its writing transaction."""
    settings.ANALYTICS_SEQUENCE_RESULT_CACHE_BYTES = 0  # else the second report reads no rows at all
    pop = build_population(start=START, days=3, sessions=90)
    now = START + timedelta(days=2, hours=6)
    services.rollup_advance(now=now)
    scope = selectors.scope_build(start=START.date(), end=(START + timedelta(days=2)).date())
    steps = selectors.funnel_steps_from_strings(["page:/", "event:click"])
    in_scope = SequenceDay.objects.filter(first_event_at__lt=scope.end, last_event_at__gte=scope.start).count()
    assert in_scope >= 2

    def funnel():
        return selectors.funnel_report(scope=scope, steps=steps, window=timedelta(hours=2))

    def uncached():
        settings.ANALYTICS_SEQUENCE_DAY_CACHE_BYTES = 0
        try:
            return funnel()
        finally:
            settings.ANALYTICS_SEQUENCE_DAY_CACHE_BYTES = 64 * 1024 * 1024

    DAY_CACHE.clear()
    first = funnel()
    assert (DAY_CACHE.hits, DAY_CACHE.misses) == (0, in_scope)
    assert funnel() == first == uncached()
    assert (DAY_CACHE.hits, DAY_CACHE.misses) == (in_scope, in_scope)

    victim = next(s for s in pop.sessions if SessionSequence.objects.filter(session_id=s.pk).exists())
    day = victim.started_at.replace(hour=0, minute=0, second=0, microsecond=0)
    UserSession.objects.filter(pk=victim.pk).delete()  # blanks the day's row
    assert SequenceDay.objects.get(neuron_id=victim.neuron_id, day=day).stale
    after_delete = funnel()
    assert after_delete == uncached()
    assert DAY_CACHE.misses == in_scope  # the stale row is not looked up

    services.rollup_advance(now=now)  # rebuilds the row: a new version
    assert not SequenceDay.objects.get(neuron_id=victim.neuron_id, day=day).stale
    hits, misses = DAY_CACHE.hits, DAY_CACHE.misses
    assert funnel() == after_delete == uncached()
    assert DAY_CACHE.misses == misses + 1 and DAY_CACHE.hits == hits + in_scope - 1


def test_day_cache_keeps_the_recent_rows_within_its_budget(settings):
    settings.ANALYTICS_SEQUENCE_DAY_CACHE_BYTES = 100
    cache = DayCache()
    for pk in range(1, 5):
        cache.put(pk, "v1", DayPayload(b"h" * 10, b"e" * 20, {}))  # 30 bytes each
    assert cache.get(1, "v1") is None  # evicted: 4 x 30 > 100
    assert cache.get(2, "v1") is not None
    cache.put(5, "v1", DayPayload(b"h" * 10, b"e" * 20, {}))  # evicts 3, the least recently used
    assert cache.get(3, "v1") is None and cache.get(2, "v1") is not None
    assert cache.get(2, "v2") is None  # another version of the row is a miss
    cache.put(6, "v1", DayPayload(b"x" * 101, b"", {}))  # larger than the budget: not kept
    assert cache.get(6, "v1") is None and cache.get(5, "v1") is not None


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_funnels_and_journeys_keep_what_they_computed_from_unchanged_days(short_settle, settings):
    """A second report with the same terms reads no day rows: it reuses the days' stream and
    reach (funnel) or trails (journeys), and matches only the recent sessions again; new events
    of a visitor with closed sessions, a blanked day and its rebuild each give the reading
    without any cache."""
    pop = build_population(start=START, days=3, sessions=90)
    now = START + timedelta(days=2, hours=6)
    services.rollup_advance(now=now)
    scope = selectors.scope_build(start=START.date(), end=(START + timedelta(days=2)).date(), now=now)
    steps = selectors.funnel_steps_from_strings(["page:/", "page:/pricing"])

    def reports():
        return (
            selectors.funnel_report(scope=scope, steps=steps, window=timedelta(days=1)),
            selectors.journeys_report(scope=scope, page="/pricing", direction="next", depth=2, top=3),
        )

    def uncached():
        settings.ANALYTICS_SEQUENCE_DAY_CACHE_BYTES = settings.ANALYTICS_SEQUENCE_RESULT_CACHE_BYTES = 0
        try:
            return reports()
        finally:
            settings.ANALYTICS_SEQUENCE_DAY_CACHE_BYTES = settings.ANALYTICS_SEQUENCE_RESULT_CACHE_BYTES = 1 << 26

    DAY_RESULT_CACHE.clear()
    DAY_CACHE.clear()
    first = reports()
    assert (DAY_RESULT_CACHE.hits, DAY_RESULT_CACHE.misses) == (0, 2)
    day_lookups = DAY_CACHE.hits + DAY_CACHE.misses
    assert reports() == first == uncached()
    assert (DAY_RESULT_CACHE.hits, DAY_RESULT_CACHE.misses) == (2, 2)
    assert DAY_CACHE.hits + DAY_CACHE.misses == day_lookups  # no day row looked at

    # A visitor of a closed day comes back in an open session: "/" then "/pricing", inside the window.
    day_rows = SequenceDay.objects.filter(stale=False)
    closed = next(
        s
        for s in pop.sessions
        if s.anonymous_id and any(s.pk in _day_sessions(row) for row in day_rows.filter(neuron_id=s.neuron_id))
    )
    mark = RollupWatermark.objects.get(granularity="session").closed_through
    back = UserSessionFactory(
        neuron=closed.neuron,
        anonymous_id=closed.anonymous_id,
        started_at=mark + timedelta(minutes=10),
        last_activity_at=mark + timedelta(minutes=15),
    )
    for minute, path in ((0, "/"), (1, "/pricing"), (2, "/docs")):
        BehaviorEventFactory(
            session=back,
            neuron=back.neuron,
            event_type="page_view",
            page_path=path,
            timestamp=back.started_at + timedelta(minutes=minute),
        )
    assert not SessionSequence.objects.filter(session=back).exists()
    with_back = reports()
    assert with_back == uncached() and with_back != first
    assert DAY_RESULT_CACHE.hits == 4  # the days are unchanged

    victim = next(s for s in pop.sessions if SessionSequence.objects.filter(session_id=s.pk).exists())
    UserSession.objects.filter(pk=victim.pk).delete()  # blanks its day's row: other versions
    after_delete = reports()
    assert after_delete == uncached()
    assert DAY_RESULT_CACHE.misses == 4
    services.rollup_advance(now=now)  # rebuilds the row
    assert reports() == after_delete == uncached()
    assert DAY_RESULT_CACHE.misses == 6
