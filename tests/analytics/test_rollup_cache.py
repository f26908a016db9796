"""Rollup sums and visitor-set unions kept per process: served only while what they were read from is unchanged."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics import selectors, services
from analytics.models import DailyRollup, HourlyRollup, RollupWatermark
from analytics.rollup_cache import RollupCache
from analytics.selectors import _not_in_sorted
from analytics.sequences import VISITOR_IDS_DTYPE
from sessions_app.models import BehaviorEvent, UserSession
from tests.analytics.bruteforce import Recount
from tests.analytics.factories import build_population
from tests.sessions_app.factories import BehaviorEventFactory, UserSessionFactory

START = datetime(2026, 10, 30, tzinfo=UTC)
NOW = START + timedelta(days=3)


@pytest.fixture(autouse=True)
def _short_settle(settings):
    settings.ANALYTICS_ROLLUP_SETTLE = timedelta(hours=1)


def _rollup_queries(ctx) -> int:
    return sum("analytics_rollup_hourly" in q["sql"] or "analytics_rollup_daily" in q["sql"] for q in ctx)


def _scope():
    return selectors.scope_build(start=START.date(), end=(START + timedelta(days=2)).date(), now=NOW)


def _countries(scope) -> dict[str, int]:
    return {row["value"]: row["sessions"] for row in selectors.geographic_report(scope=scope)["countries"]}


def _recount(scope) -> dict[str, int]:
    rc = Recount(UserSession.objects.all(), BehaviorEvent.objects.all(), start=scope.start, end=scope.end)
    return dict(rc.by_session_attr(lambda s: s.country))


def _generations() -> dict[str, int]:
    return dict(RollupWatermark.objects.values_list("granularity", "generation"))


# -- the cache itself ---------------------------------------------------------------------------


def test_rows_are_read_once_per_key_and_the_least_recently_used_go_first(settings):
    settings.ANALYTICS_ROLLUP_CACHE_ROWS = 5
    cache = RollupCache()
    reads: list[str] = []

    def read(key: str, n: int):
        def run():
            reads.append(key)
            return [{"value": i} for i in range(n)]

        return run

    assert cache.get_or_read("a", read("a", 2)) == ({"value": 0}, {"value": 1})
    assert cache.get_or_read("a", read("a", 2)) == ({"value": 0}, {"value": 1})
    assert reads == ["a"] and (cache.hits, cache.misses) == (1, 1)
    cache.get_or_read("b", read("b", 2))
    cache.get_or_read("a", read("a", 2))  # a is now the most recently used
    cache.get_or_read("c", read("c", 2))  # 6 rows > 5: b goes
    cache.get_or_read("a", read("a", 2))
    cache.get_or_read("b", read("b", 2))
    assert reads == ["a", "b", "c", "b"]
    # An answer larger than the whole cache is returned, not kept; an empty one counts as a row.
    assert len(cache.get_or_read("big", read("big", 6))) == 6
    cache.get_or_read("big", read("big", 6))
    assert reads.count("big") == 2
    cache.get_or_read("empty", read("empty", 0))
    cache.get_or_read("empty", read("empty", 0))
    assert reads.count("empty") == 1


def test_zero_rows_turns_the_cache_off(settings):
    settings.ANALYTICS_ROLLUP_CACHE_ROWS = 0
    cache = RollupCache()
    reads: list[int] = []
    for _ in range(3):
        cache.get_or_read("a", lambda: reads.append(1) or [{"value": 1}])
    assert len(reads) == 3 and cache.misses == 0


# -- reports ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_repeated_report_reads_no_rollups_and_gives_the_same_numbers():
    build_population(start=START, days=2, sessions=60)
    services.rollup_advance(now=NOW)
    scope = _scope()
    with CaptureQueriesContext(connection) as first:
        cold = selectors.geographic_report(scope=scope)
    with CaptureQueriesContext(connection) as second:
        warm = selectors.geographic_report(scope=scope)
    assert warm == cold
    assert _rollup_queries(first) >= 1 and _rollup_queries(second) == 0
    assert len(second) < len(first)
    assert _countries(scope) == _recount(scope)


@pytest.mark.django_db
def test_a_rebuilt_hour_is_read_again():
    """A late event folded in by the reconcile job changes the next report at once."""
    session = UserSessionFactory(started_at=START + timedelta(hours=2))
    BehaviorEventFactory(session=session, timestamp=START + timedelta(hours=2, minutes=5))
    services.rollup_advance(now=NOW)
    scope = selectors.scope_build(start=START.date(), end=START.date(), now=NOW)
    assert selectors.metrics_summary(scope=scope, now=NOW)["consented"]["pageViews"]["value"] == 1
    before = _generations()
    BehaviorEventFactory(
        session=session, timestamp=START + timedelta(hours=2, minutes=30), message_id=str(uuid.uuid4())
    )
    assert services.rollup_reconcile(now=NOW) == {"hours": 1, "days": 1}
    after = _generations()
    assert after["hour"] > before["hour"] and after["day"] > before["day"]
    assert selectors.metrics_summary(scope=scope, now=NOW)["consented"]["pageViews"]["value"] == 2


@pytest.mark.django_db
def test_every_rebuild_counts_a_generation():
    build_population(start=START, days=1, sessions=20)
    services.rollup_advance(now=NOW)
    base = _generations()
    services.rollup_build_hours(start=START, end=START + timedelta(hours=3), now=NOW)
    assert _generations()["hour"] == base["hour"] + 1 and _generations()["day"] == base["day"]
    services.rollup_build_days(start=START, end=START + timedelta(days=1), now=NOW)
    # Building a day drops its hours' breakdown rows: both change.
    assert _generations() == {**base, "hour": base["hour"] + 2, "day": base["day"] + 1}


@pytest.mark.django_db
def test_a_moved_watermark_or_rollups_built_anew_are_read_again():
    build_population(start=START, days=1, sessions=30)
    services.rollup_advance(now=START + timedelta(days=1, hours=3))
    assert _countries(_scope()) == _recount(_scope())
    # The next day's sessions: read raw at first, then from the rollups once the watermark moves.
    build_population(start=START + timedelta(days=1), days=1, sessions=30, seed=8)
    assert _countries(_scope()) == _recount(_scope())
    services.rollup_advance(now=NOW)
    assert _countries(_scope()) == _recount(_scope())
    # Every rollup and watermark dropped and built again, twice, with a session added to a closed
    # hour in between: both builds end with the same watermarks and generations, in new rows.
    for model in (HourlyRollup, DailyRollup, RollupWatermark):
        model.objects.all().delete()
    services.rollup_advance(now=NOW)
    rebuilt = _generations()
    before = _countries(_scope())
    UserSessionFactory(
        started_at=START + timedelta(hours=4),
        last_activity_at=START + timedelta(hours=4, minutes=5),
        ended_at=START + timedelta(hours=4, minutes=5),
        country="IS",
        neuron=UserSession.objects.earliest("pk").neuron,
    )
    for model in (HourlyRollup, DailyRollup, RollupWatermark):
        model.objects.all().delete()
    services.rollup_advance(now=NOW)
    assert _generations() == rebuilt
    counted = _countries(_scope())
    assert counted == _recount(_scope()) and counted["IS"] == before.get("IS", 0) + 1


# -- visitor sets -------------------------------------------------------------------------------


def test_not_in_sorted_counts_distinct_values_missing_from_the_sorted_ids():
    held = np.array([2, 5, 9], dtype=VISITOR_IDS_DTYPE)
    assert _not_in_sorted([], held) == 0
    assert _not_in_sorted([5, 5, 9], held) == 0
    assert _not_in_sorted([1, 5, 10, 10, 12], held) == 3  # 1, 10, 12
    assert _not_in_sorted([3, 3], np.empty(0, dtype=VISITOR_IDS_DTYPE)) == 1


def _visitors(scope) -> list[int]:
    return [
        point["value"] for point in selectors.trends_series(scope=scope, metric="visitors", interval="day")["series"]
    ]


def _recount_visitors(scope) -> list[int]:
    rc = Recount(UserSession.objects.all(), BehaviorEvent.objects.all(), start=scope.start, end=scope.end)
    return [rc.metrics(a, b)["visitors"] for a, b in rc.local_days()]


@pytest.mark.django_db
def test_repeated_visitor_counts_read_no_sets_and_a_rebuilt_hour_is_read_again():
    build_population(start=START, days=2, sessions=60)
    services.rollup_advance(now=NOW)
    scope = _scope()
    with CaptureQueriesContext(connection) as first:
        cold = _visitors(scope)
    with CaptureQueriesContext(connection) as second:
        warm = _visitors(scope)
    assert warm == cold == _recount_visitors(scope)
    assert any("analytics_rollup_visitors" in q["sql"] for q in first)
    assert not any("analytics_rollup_visitors" in q["sql"] for q in second)
    # A new visitor's session lands in a closed hour; the reconcile job rebuilds the hour's set.
    generation = _generations()["visitors"]
    UserSessionFactory(
        started_at=START + timedelta(hours=7),
        last_activity_at=START + timedelta(hours=7, minutes=5),
        ended_at=START + timedelta(hours=7, minutes=5),
        neuron=UserSession.objects.earliest("pk").neuron,
    )
    services.rollup_reconcile(now=NOW)
    assert _generations()["visitors"] > generation
    counted = _visitors(scope)
    assert counted == _recount_visitors(scope) and counted[0] == cold[0] + 1
