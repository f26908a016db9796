"""Every analytics number equals a brute-force recount over the same rows.

Each report is read with no rollups (all raw), with rollups closed part-way
through the range (rollups + raw), and with everything closed, in UTC, in a
zone crossing a DST change and in a half-hour zone, with and without filters.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from analytics import selectors, services
from tests.analytics.bruteforce import Recount
from tests.analytics.factories import build_population

pytestmark = pytest.mark.django_db

START = datetime(2026, 10, 30, tzinfo=UTC)  # America/New_York leaves DST on 2026-11-01
FIRST_DAY, LAST_DAY = date(2026, 10, 30), date(2026, 11, 2)
ZONES = ["UTC", "America/New_York", "Asia/Kolkata"]
SPLITS = {
    "raw": None,  # no rollup job has run
    "split": START + timedelta(days=2, hours=5),  # closed through 2026-11-01 04:00 UTC
    "closed": START + timedelta(days=9),
}


@pytest.fixture
def population(db, settings):
    settings.ANALYTICS_ROLLUP_SETTLE = timedelta(hours=1)
    settings.ANALYTICS_CONVERSION_EVENT_TYPES = ["conversion"]
    settings.ANALYTICS_CONVERSION_EVENT_NAMES = []
    return build_population(start=START)


def _roll(split: str) -> datetime:
    now = SPLITS[split]
    if now is not None:
        services.rollup_advance(now=now)
        return now
    return START + timedelta(days=9)


def _scope_and_recount(pop, tz: str, **filters):
    neuron = filters.pop("neuron", None)
    scope = selectors.scope_build(
        start=FIRST_DAY, end=LAST_DAY, tz=tz, neuron_slug=neuron.slug if neuron else None, **filters
    )
    recount = Recount(
        pop.sessions,
        pop.events,
        start=scope.start,
        end=scope.end,
        tz=tz,
        neuron_ids={neuron.pk} if neuron else None,
        device=filters.get("device_type"),
        country=filters.get("country"),
        utm=filters.get("utm_source"),
    )
    return scope, recount


def _assert_metrics(actual: dict, expected: dict) -> None:
    for name, value in expected.items():
        assert actual[name] == pytest.approx(value, rel=1e-5, abs=1e-3), name


FILTERS = {
    "all": {},
    "mobile": {"device_type": "mobile"},
    "gb-newsletter": {"country": "GB", "utm_source": "newsletter"},
    "no-country": {"country": ""},
}
CASES = [(split, tz, "all") for split in SPLITS for tz in ZONES] + [
    (split, tz, name)
    for name in ("mobile", "gb-newsletter", "no-country")
    for split, tz in (("split", "America/New_York"), ("closed", "UTC"))
]


@pytest.mark.parametrize("split,tz,filter_name", CASES)
def test_metrics_match_brute_force(population, split, tz, filter_name):
    """Headline metrics and their previous period equal a recount, whatever mix of rollups and raw rows."""
    filters = FILTERS[filter_name]
    now = _roll(split)
    scope, recount = _scope_and_recount(population, tz, **filters)
    body = selectors.metrics_summary(scope=scope, now=now)
    current = {k: v["value"] for k, v in body["consented"].items()}
    previous = {k: v["previous"] for k, v in body["consented"].items()}
    _assert_metrics(current, recount.metrics())
    _assert_metrics(previous, recount.metrics(scope.previous.start, scope.previous.end))
    assert current["sessions"] > 0 or filters


def test_metrics_for_one_neuron_match_brute_force(population):
    """neuronId narrows every number to that site."""
    now = _roll("split")
    scope, recount = _scope_and_recount(population, "UTC", neuron=population.neurons[1])
    body = selectors.metrics_summary(scope=scope, now=now)
    _assert_metrics({k: v["value"] for k, v in body["consented"].items()}, recount.metrics())


def test_active_sessions_count_recent_unended_consented_sessions(population):
    """Active now: analytics-consented sessions with activity in the last five minutes that have not ended."""
    now = max(s.last_activity_at for s in population.sessions) + timedelta(minutes=2)
    scope, _ = _scope_and_recount(population, "UTC")
    expected = sum(
        1
        for s in population.sessions
        if s.consent["analytics"] and s.ended_at is None and s.last_activity_at >= now - timedelta(minutes=5)
    )
    assert selectors.metrics_summary(scope=scope, now=now)["activeSessions"] == expected


def test_anonymous_traffic_is_reported_separately(population):
    """Traffic counted without consent is summed from its day buckets, apart from consented numbers."""
    scope, _ = _scope_and_recount(population, "UTC", device_type="mobile")
    from sessions_app.models import AnonymousTrafficCount

    rows = AnonymousTrafficCount.objects.filter(device_type="mobile", day__gte=FIRST_DAY, day__lte=LAST_DAY)
    body = selectors.metrics_summary(scope=scope)
    assert body["anonymous"]["pageViews"]["value"] == sum(r.page_views for r in rows)
    assert body["anonymous"]["events"]["value"] == sum(r.events for r in rows)
    scope_utm, _ = _scope_and_recount(population, "UTC", utm_source="ads")
    assert selectors.metrics_summary(scope=scope_utm)["anonymous"] is None


@pytest.mark.parametrize("split,tz", [(s, tz) for s in SPLITS for tz in ZONES if s == "split" or tz == "UTC"])
def test_daily_trends_match_brute_force(population, split, tz):
    """Each local day's value of every trend metric equals a recount."""
    _roll(split)
    scope, recount = _scope_and_recount(population, tz)
    days = recount.local_days()
    for metric in selectors.TREND_METRICS:
        series = selectors.trends_series(scope=scope, metric=metric, interval="day")["series"]
        assert len(series) == len(days) == 4
        for point, (a, b) in zip(series, days, strict=True):
            assert point["value"] == pytest.approx(recount.metrics(a, b)[metric], rel=1e-5, abs=1e-3), (metric, a)


@pytest.mark.parametrize("split", ["split", "closed"])
def test_hourly_trends_match_brute_force(population, split):
    """Hourly buckets in a DST-changing zone (a 25-hour local day) equal a recount."""
    _roll(split)
    scope, recount = _scope_and_recount(population, "America/New_York", device_type="desktop")
    hours = recount.hours()
    assert len(hours) == 4 * 24 + 1
    for metric in ("sessions", "events", "visitors"):
        series = selectors.trends_series(scope=scope, metric=metric, interval="hour")["series"]
        assert [p["value"] for p in series] == [recount.metrics(a, b)[metric] for a, b in hours], metric


def test_multi_day_visitors_are_not_the_sum_of_daily_visitors(population):
    """Visitors over the range count each returning visitor once, unlike the sum of daily counts."""
    _roll("closed")
    scope, recount = _scope_and_recount(population, "UTC")
    daily = selectors.trends_series(scope=scope, metric="visitors", interval="day")["series"]
    total = selectors.metrics_summary(scope=scope)["consented"]["visitors"]["value"]
    assert total == recount.metrics()["visitors"]
    assert total < sum(p["value"] for p in daily)


def _as_counter(rows, key, value):
    return {r[key]: r[value] for r in rows}


@pytest.mark.parametrize("split", list(SPLITS))
def test_breakdowns_match_brute_force(population, split):
    """Pages, entry/exit pages, referrers, UTM, events, devices, countries and engagement bins equal recounts."""
    _roll(split)
    scope, rc = _scope_and_recount(population, "America/New_York", country="US")
    pages = selectors.pages_report(scope=scope, limit=100)
    assert _as_counter(pages["top"], "path", "pageViews") == dict(rc.page_views_by_path())
    assert _as_counter(pages["entry"], "path", "sessions") == dict(rc.entry_pages())
    assert _as_counter(pages["exit"], "path", "sessions") == dict(rc.exit_pages())

    refs = selectors.referrers_report(scope=scope, limit=100)
    assert {(r["domain"] or ""): r["sessions"] for r in refs["referrers"]} == dict(rc.referrer_domains())
    expected_utm = {k: v for k, v in rc.by_session_attr(lambda s: s.utm_medium).items() if k}
    assert _as_counter(refs["utm"]["medium"], "value", "sessions") == expected_utm

    events = selectors.events_report(scope=scope, limit=100)
    assert _as_counter(events["types"], "type", "count") == dict(
        __import__("collections").Counter(e.event_type for e in rc.events())
    )
    assert {(n["type"], n["name"]): n["count"] for n in events["names"]} == dict(
        __import__("collections").Counter((e.event_type, e.event_name) for e in rc.events() if e.event_name)
    )

    devices = selectors.devices_report(scope=scope)
    assert _as_counter(devices["deviceTypes"], "value", "sessions") == dict(rc.by_session_attr(lambda s: s.device_type))
    assert _as_counter(devices["browsers"], "value", "sessions") == dict(rc.by_session_attr(lambda s: s.browser))
    assert _as_counter(devices["operatingSystems"], "value", "sessions") == dict(rc.by_session_attr(lambda s: s.os))

    scope_all, rc_all = _scope_and_recount(population, "UTC")
    geo = selectors.geographic_report(scope=scope_all)
    assert _as_counter(geo["countries"], "value", "sessions") == dict(rc_all.by_session_attr(lambda s: s.country))

    engagement = selectors.engagement_report(scope=scope)
    assert {b["from"]: b["sessions"] for b in engagement["bins"] if b["sessions"]} == dict(rc.engagement_bins())
    assert engagement["average"] == pytest.approx(rc.metrics()["avgEngagement"], abs=1e-3)
    assert engagement["sessions"] == rc.metrics()["sessions"]


def test_segments_match_brute_force(population):
    """Built-in segments: new vs returning, device, country and consent state equal recounts."""
    _roll("split")
    scope, rc = _scope_and_recount(population, "UTC")
    body = selectors.segments_report(scope=scope)
    seg = {s["id"]: s["sessions"] for s in body["segments"]}
    m = rc.metrics()
    assert seg["visitors:new"] == m["newSessions"]
    assert seg["visitors:returning"] == m["sessions"] - m["newSessions"]
    for device, n in rc.by_session_attr(lambda s: s.device_type).items():
        assert seg[f"device:{device}"] == n
    everyone = [s for s in population.sessions if scope.start <= s.started_at < scope.end]
    assert body["allSessions"] == len(everyone)
    assert seg["consent:analytics"] == sum(s.consent["analytics"] for s in everyone)
    assert seg["consent:personalization"] == sum(s.consent["personalization"] for s in everyone)


@pytest.mark.parametrize("window", [60, 1800, 86400])
@pytest.mark.parametrize("tz,split", [("UTC", "raw"), ("Asia/Kolkata", "split"), ("UTC", "closed")])
def test_funnel_matches_exhaustive_search(population, window, tz, split):
    """Entrants per step equal an exhaustive search over ordered event choices within the window,
    whether read from raw events, from session sequences, or from both."""
    _roll(split)
    scope, rc = _scope_and_recount(population, tz)
    raw = ["page:/", "event:click", "page:/checkout", "event:conversion:purchase"]
    steps = selectors.funnel_steps_from_strings(raw)
    body = selectors.funnel_report(scope=scope, steps=steps, window=timedelta(seconds=window))
    predicates = [
        lambda e: e.event_type == "page_view" and e.page_path == "/",
        lambda e: e.event_type == "click",
        lambda e: e.event_type == "page_view" and e.page_path == "/checkout",
        lambda e: e.event_type == "conversion" and e.event_name == "purchase",
    ]
    expected = rc.funnel(predicates, window)
    assert [s["entrants"] for s in body["steps"]] == expected
    assert expected[0] > 0
    for prev, step in zip(body["steps"], body["steps"][1:], strict=False):
        assert step["dropOff"] == prev["entrants"] - step["entrants"]


@pytest.mark.parametrize("period,periods", [("day", 3), ("week", 2)])
@pytest.mark.parametrize("tz,filter_name", [("UTC", "all"), ("America/New_York", "mobile"), ("Asia/Kolkata", "mobile")])
@pytest.mark.parametrize(
    "counting,split", [("sets", "split"), ("sets", "closed"), ("bits", "raw"), ("bits", "closed"), ("window", "raw")]
)
def test_retention_matches_brute_force(population, period, periods, tz, filter_name, counting, split, monkeypatch):
    """Cohort sizes and returning counts per later period equal a recount from all sessions, whether
    counted from the hours' visitor sets (and the sessions since them), or by PostgreSQL marking each
    visitor's periods as bits, or by a window query (longer spans, other databases)."""
    _roll(split)
    used_sets = []
    sets = selectors._retention_counts_sets

    def spy(*args, **kwargs):
        counted = sets(*args, **kwargs) if counting == "sets" else None
        used_sets.append(counted is not None)
        return counted

    monkeypatch.setattr(selectors, "_retention_counts_sets", spy)
    if counting == "window":
        monkeypatch.setattr(selectors, "RETENTION_BIT_PERIODS", 0)
    scope, rc = _scope_and_recount(population, tz, **FILTERS[filter_name])
    body = selectors.retention_report(scope=scope, period=period, periods=periods)
    # Visitor sets answer unless an hour straddles two local days (a half-hour zone).
    assert used_sets == [counting == "sets" and tz != "Asia/Kolkata"]
    got = [
        (date.fromisoformat(c["cohort"]), c["visitors"], [r["visitors"] for r in c["returning"]])
        for c in body["cohorts"]
        if c["visitors"]
    ]
    assert got == rc.retention(period, periods)
    assert got


@pytest.mark.parametrize("split", ["split", "closed"])
def test_retention_from_visitor_sets_leaves_out_visitors_seen_before_the_range(population, split):
    """From a range starting a day into the data, the visitors of that first day (in earlier sets, or
    sessions read raw) are in no cohort, as a recount from all sessions has it."""
    _roll(split)
    scope = selectors.scope_build(start=FIRST_DAY + timedelta(days=1), end=LAST_DAY, tz="UTC")
    rc = Recount(population.sessions, population.events, start=scope.start, end=scope.end, tz="UTC")
    assert selectors._retention_counts_sets(scope, origin=FIRST_DAY, period="day", horizon=scope.end) is not None
    body = selectors.retention_report(scope=scope, period="day", periods=2)
    got = [
        (date.fromisoformat(c["cohort"]), c["visitors"], [r["visitors"] for r in c["returning"]])
        for c in body["cohorts"]
        if c["visitors"]
    ]
    assert got == rc.retention("day", 2)
    everyone = Recount(population.sessions, population.events, start=START, end=scope.end, tz="UTC")
    assert sum(n for _, n, _ in got) < sum(n for _, n, _ in everyone.retention("day", 2))


@pytest.mark.parametrize("split", list(SPLITS))
def test_journeys_match_brute_force(population, split):
    """Journey nodes and links after a page add up to recounted trails, top pages named, the rest grouped,
    whether read from raw events, from session sequences, or from both."""
    _roll(split)
    scope, rc = _scope_and_recount(population, "UTC")
    body = selectors.journeys_report(scope=scope, page="/pricing", direction="next", depth=2, top=100)
    trails = rc.journeys_next("/pricing", 2)
    assert {n["id"]: n["sessions"] for n in body["nodes"] if n["level"] == 0} == {"0:/pricing": sum(trails.values())}
    expected_level1: dict[str, int] = {}
    for trail, n in trails.items():
        expected_level1[f"1:{trail[0]}"] = expected_level1.get(f"1:{trail[0]}", 0) + n
    assert {n["id"]: n["sessions"] for n in body["nodes"] if n["level"] == 1} == expected_level1
    link_total = sum(link["sessions"] for link in body["links"] if link["source"] == "0:/pricing")
    assert link_total == sum(trails.values())
    narrow = selectors.journeys_report(scope=scope, page="/pricing", direction="next", depth=2, top=1)
    assert len([n for n in narrow["nodes"] if n["level"] == 1 and n["page"] not in ("(exit)", "(other)")]) <= 1


def test_scope_defaults_to_last_30_local_days(db):
    """Without from/to the range is the 30 local days ending today."""
    now = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
    scope = selectors.scope_build(tz="America/New_York", now=now)
    assert scope.end.astimezone(scope.tz).date() == date(2026, 11, 29)  # 22:00 on the 28th in New York
    assert scope.start.astimezone(scope.tz).date() == date(2026, 10, 30)
    assert scope.end.astimezone(scope.tz).date() - scope.start.astimezone(scope.tz).date() == timedelta(days=30)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"tz": "Mars/Olympus"}, "tz"),
        ({"start": date(2026, 11, 2), "end": date(2026, 11, 1)}, "from"),
        ({"start": date(2020, 1, 1), "end": date(2026, 1, 1)}, "to"),
        ({"start": datetime(2026, 11, 1, 10, 30, tzinfo=UTC)}, "from"),
        ({"neuron_slug": "nope"}, "neuronId"),
    ],
)
def test_bad_scope_parameters_are_validation_errors(db, kwargs, field):
    """Unknown zones, inverted or overlong ranges, off-hour instants and unknown sites name the field."""
    from config.api.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as info:
        selectors.scope_build(**kwargs)
    assert field in info.value.errors


def _utc(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def test_source_plan_reads_closed_hours_of_metrics_from_hourly_rollups():
    """Metrics dimensions (hourly rows for every closed hour): daily rows for whole closed days, hourly
    rows for the other closed hours, raw rows only after the hourly watermark."""
    plan = selectors.source_plan([_utc(1, 5), _utc(4, 5)], hourly_through=_utc(3, 18), daily_through=_utc(3))
    assert plan.daily == [(_utc(2), _utc(3))]
    assert plan.hourly == [(_utc(1, 5), _utc(2)), (_utc(3), _utc(3, 18))]
    assert plan.raw == [(_utc(3, 18), _utc(4, 5))]


def test_source_plan_reads_breakdowns_raw_where_days_dropped_their_hours():
    """Breakdown dimensions have hourly rows only from `hourly_from` (hours no daily rollup covers)."""
    plan = selectors.source_plan(
        [_utc(1, 5), _utc(4, 5)], hourly_through=_utc(3, 18), daily_through=_utc(2), hourly_from=_utc(2)
    )
    assert plan.daily == []
    assert plan.hourly == [(_utc(2), _utc(3, 18))]
    assert plan.raw == [(_utc(1, 5), _utc(2)), (_utc(3, 18), _utc(4, 5))]


def test_source_plan_reads_half_hour_zones_raw():
    """Bucket edges off the whole UTC hour cannot use rollups."""
    bounds = [_utc(1, 5) - timedelta(minutes=30), _utc(4, 5) - timedelta(minutes=30)]
    plan = selectors.source_plan(bounds, hourly_through=_utc(3, 18), daily_through=_utc(3))
    assert (plan.daily, plan.hourly, plan.raw) == ([], [], [(bounds[0], bounds[1])])


def test_visitors_of_closed_hours_come_from_visitor_sets(population):
    """With hours closed part-way, visitors are the union of the closed hours' sets and the open
    sessions (a visitor seen on both sides once, one not yet given a Visitor id too), read without
    counting distinct anonymous ids in the database."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _roll("split")
    scope, recount = _scope_and_recount(population, "UTC")
    with CaptureQueriesContext(connection) as queries:
        summary = selectors.metrics_summary(scope=scope)
        daily = selectors.trends_series(scope=scope, metric="visitors", interval="day")["series"]
    assert summary["consented"]["visitors"]["value"] == recount.metrics()["visitors"]
    assert [p["value"] for p in daily] == [recount.metrics(a, b)["visitors"] for a, b in recount.local_days()]
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert "analytics_rollup_visitors" in sql
    assert "COUNT(DISTINCT" not in sql.upper()
    mark = SPLITS["split"] - timedelta(hours=1)
    closed = {(s.neuron_id, s.anonymous_id) for s in recount.sessions() if s.started_at < mark}
    opened = {(s.neuron_id, s.anonymous_id) for s in recount.sessions() if s.started_at >= mark}
    assert closed & opened and opened - closed  # both cases occur in the population


@pytest.mark.parametrize("table_limit", [1 << 20, 0])
def test_action_codes_by_table_and_by_search(monkeypatch, table_limit):
    """Each event's code is its action's value, 0 for actions not asked for, whether looked up
    in a table indexed by id or searched among the wanted ids (ids too large for a table)."""
    import numpy as np

    monkeypatch.setattr(selectors, "MAX_ACTION_TABLE", table_limit)
    action = np.array([5, 3, 9, 5, 1, 12, 3], dtype="<i4")
    codes = selectors._action_codes(action, np.array([9, 3, 5]), np.array([4, 1, 2]))
    assert codes.tolist() == [2, 1, 4, 2, 0, 0, 1]
    assert (
        selectors._action_codes(action, np.array([], dtype=np.int64), np.array([], dtype=np.int64)).tolist() == [0] * 7
    )


def test_trends_read_only_what_their_metric_needs(population):
    """A series of sessions runs neither the new-visitor nor the conversion subquery over raw rows, nor
    reads events; a conversion rate does run the conversion one."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    scope, _ = _scope_and_recount(population, "UTC")  # nothing rolled up: all raw
    with CaptureQueriesContext(connection) as queries:
        selectors.trends_series(scope=scope, metric="sessions", interval="day")
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert "EXISTS" not in sql.upper() and "behavior_events" not in sql
    with CaptureQueriesContext(connection) as queries:
        selectors.trends_series(scope=scope, metric="conversionRate", interval="day")
    assert "EXISTS" in " ".join(q["sql"] for q in queries.captured_queries).upper()


def test_report_dimensions_with_the_same_open_period_share_one_raw_query(population):
    """Segments read totals (hourly rollups) and breakdowns (daily rollups) from different tables,
    but the open hours of both from one query over the sessions."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _roll("split")
    scope, recount = _scope_and_recount(population, "UTC")
    with CaptureQueriesContext(connection) as queries:
        body = selectors.segments_report(scope=scope)
    assert sum("NOT EXISTS" in q["sql"].upper() for q in queries.captured_queries) == 1
    assert body["sessions"] == recount.metrics()["sessions"]
