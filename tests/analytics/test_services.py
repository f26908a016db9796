"""Rollup jobs: idempotent, closed periods only, late rows folded in, nothing personal stored."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from analytics import selectors, services
from analytics.models import ALL, DailyRollup, HourlyRollup, RollupPeriod, RollupWatermark
from tests.analytics.factories import build_population
from tests.sessions_app.factories import BehaviorEventFactory, UserSessionFactory

pytestmark = pytest.mark.django_db

START = datetime(2026, 10, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _short_settle(settings):
    settings.ANALYTICS_ROLLUP_SETTLE = timedelta(hours=1)


def _snapshot(model):
    fields = [f.name for f in model._meta.fields if f.name != "id"]
    return sorted(tuple(row) for row in model.objects.values_list(*fields))


def test_rollup_advance_is_idempotent():
    """Running the job again, or rebuilding the same periods, leaves exactly the same rows."""
    build_population(start=START, days=2, sessions=60)
    now = START + timedelta(days=3)
    first = services.rollup_advance(now=now)
    assert first["hours"] > 0 and first["days"] >= 2
    hourly, daily = _snapshot(HourlyRollup), _snapshot(DailyRollup)
    assert services.rollup_advance(now=now) == {"hours": 0, "days": 0}
    services.rollup_build_hours(start=START, end=START + timedelta(days=2), now=now)
    services.rollup_build_days(start=START, end=START + timedelta(days=2), now=now)
    assert _snapshot(HourlyRollup) == hourly
    assert _snapshot(DailyRollup) == daily


def test_only_closed_hours_are_rolled_up():
    """The watermark stops the settle time before now; later sessions stay raw."""
    session = UserSessionFactory(started_at=START + timedelta(hours=5, minutes=10))
    now = START + timedelta(hours=6, minutes=30)
    services.rollup_advance(now=now)
    mark = RollupWatermark.objects.get(granularity="hour").closed_through
    assert mark == START + timedelta(hours=5)
    assert not HourlyRollup.objects.filter(period_start__gte=mark).exists()
    scope = selectors.scope_build(start=START.date(), end=START.date(), now=now)
    assert selectors.metrics_summary(scope=scope, now=now)["consented"]["sessions"]["value"] == 1
    services.rollup_advance(now=now + timedelta(hours=1))
    row = HourlyRollup.objects.get(
        dimension="total", period_start=START + timedelta(hours=5), device_type=ALL, country=ALL, utm_source=ALL
    )
    assert row.sessions == 1 and row.neuron_id == session.neuron_id


def test_daily_rollup_equals_sum_of_its_hours():
    """For hourly dimensions, a day's row is exactly the sum of its 24 hourly rows."""
    build_population(start=START, days=2, sessions=80)
    services.rollup_advance(now=START + timedelta(days=4))
    for dimension in ("total", "event_type", "conversions"):
        for day in (START, START + timedelta(days=1)):
            daily = {
                (r.neuron_id, r.device_type, r.country, r.utm_source, r.value): (r.sessions, r.events, r.bounces)
                for r in DailyRollup.objects.filter(dimension=dimension, period_start=day)
            }
            summed: dict = {}
            for r in HourlyRollup.objects.filter(
                dimension=dimension, period_start__gte=day, period_start__lt=day + timedelta(days=1)
            ):
                key = (r.neuron_id, r.device_type, r.country, r.utm_source, r.value)
                s, e, b = summed.get(key, (0, 0, 0))
                summed[key] = (s + r.sessions, e + r.events, b + r.bounces)
            assert daily == summed, (dimension, day)


def test_reconcile_rebuilds_hours_that_received_late_events():
    """An event arriving after its hour closed is folded in by the reconcile job, once."""
    session = UserSessionFactory(started_at=START + timedelta(hours=2))
    BehaviorEventFactory(session=session, timestamp=START + timedelta(hours=2, minutes=5))
    now = START + timedelta(days=2)
    services.rollup_advance(now=now)
    scope = selectors.scope_build(start=START.date(), end=START.date(), now=now)
    assert selectors.metrics_summary(scope=scope, now=now)["consented"]["pageViews"]["value"] == 1
    BehaviorEventFactory(
        session=session, timestamp=START + timedelta(hours=2, minutes=30), message_id=str(uuid.uuid4())
    )
    assert selectors.metrics_summary(scope=scope, now=now)["consented"]["pageViews"]["value"] == 1  # stale rollup
    result = services.rollup_reconcile(now=now)
    assert result == {"hours": 1, "days": 1}
    assert selectors.metrics_summary(scope=scope, now=now)["consented"]["pageViews"]["value"] == 2
    assert services.rollup_reconcile(now=now) == {"hours": 0, "days": 0}


def test_reconcile_drops_erased_sessions():
    """Deleting raw rows (an erasure) is noticed and the affected hour rebuilt without them."""
    a = UserSessionFactory(started_at=START + timedelta(hours=1))
    UserSessionFactory(started_at=START + timedelta(hours=1, minutes=20), neuron=a.neuron)
    now = START + timedelta(days=2)
    services.rollup_advance(now=now)
    a.delete()
    services.rollup_reconcile(now=now)
    scope = selectors.scope_build(start=START.date(), end=START.date(), now=now)
    assert selectors.metrics_summary(scope=scope, now=now)["consented"]["sessions"]["value"] == 1


def test_sessions_without_analytics_consent_are_not_rolled_up():
    """A session without analytics consent adds nothing to the consented rollups."""
    UserSessionFactory(started_at=START + timedelta(hours=1), consent={"analytics": False})
    services.rollup_advance(now=START + timedelta(days=2))
    assert not HourlyRollup.objects.filter(sessions__gt=0).exists()
    assert RollupPeriod.objects.filter(granularity="hour", source_sessions__gt=0).count() == 0


def test_rollup_rows_hold_no_identifiers():
    """Rollup tables have no column that could identify a visitor."""
    names = {f.name for model in (HourlyRollup, DailyRollup) for f in model._meta.fields}
    assert not names & {"session", "anonymous_id", "profile", "ip_truncated", "user_id_hash"}


def test_rollup_advance_without_data_only_sets_the_watermark():
    """An empty database yields no rows; with no session to wait for, every hour before the
    current one (less the events grace period) is closed."""
    now = START + timedelta(hours=3, minutes=7)
    assert services.rollup_advance(now=now) == {"hours": 0, "days": 0}
    assert RollupWatermark.objects.get(granularity="hour").closed_through == START + timedelta(hours=3)
    assert not HourlyRollup.objects.exists()


def test_hours_close_once_every_session_that_started_in_them_has_settled(settings):
    """The closed boundary is the hour of the oldest session still live or within the events
    grace period of its end; a session past it does not hold hours back, and none is waited for
    longer than ANALYTICS_ROLLUP_SETTLE."""
    settings.ANALYTICS_ROLLUP_SETTLE = timedelta(hours=25)
    now = START + timedelta(days=2, hours=12, minutes=30)
    UserSessionFactory(started_at=now - timedelta(hours=9), ended_at=now - timedelta(hours=8))  # settled
    assert services.rollup_closed_target(now=now) == START + timedelta(days=2, hours=12)
    recent = UserSessionFactory(started_at=now - timedelta(hours=3, minutes=20), ended_at=now - timedelta(minutes=4))
    assert services.rollup_closed_target(now=now) == START + timedelta(days=2, hours=9)  # within the grace period
    live = UserSessionFactory(started_at=now - timedelta(hours=5, minutes=50), ended_at=None)
    assert services.rollup_closed_target(now=now) == START + timedelta(days=2, hours=6)
    # A session older than the settle window (never ended: the sweep down) holds nothing back.
    UserSessionFactory(started_at=now - timedelta(hours=30), ended_at=None)
    assert services.rollup_closed_target(now=now) == START + timedelta(days=2, hours=6)
    live.delete()
    recent.delete()
    assert services.rollup_closed_target(now=now) == START + timedelta(days=2, hours=12)


def test_breakdowns_are_kept_hourly_only_until_their_day_is_rolled_up():
    """Hours after the last daily rollup hold every dimension; once their day is rolled up, only metrics."""
    from analytics.aggregation import HOURLY_DIMENSIONS

    build_population(start=START, days=3, sessions=90)
    breakdowns = HourlyRollup.objects.exclude(dimension__in=HOURLY_DIMENSIONS)
    services.rollup_advance(now=START + timedelta(days=1, hours=6))  # hours to day 1 05:00, days to day 1
    assert breakdowns.filter(period_start__gte=START + timedelta(days=1)).exists()
    assert not breakdowns.filter(period_start__lt=START + timedelta(days=1)).exists()
    services.rollup_advance(now=START + timedelta(days=3))  # hours to day 2 23:00, days to day 2
    assert breakdowns.filter(period_start__gte=START + timedelta(days=2)).exists()
    assert not breakdowns.filter(period_start__lt=START + timedelta(days=2)).exists()


def _visitor_sets() -> dict[tuple, list[int]]:
    import numpy as np

    from analytics.models import VisitorRollup

    return {
        (r.neuron_id, r.period_start, r.device_type, r.country, r.utm_source): np.frombuffer(
            bytes(r.ids), dtype="<i8"
        ).tolist()
        for r in VisitorRollup.objects.all()
    }


def test_visitor_sets_hold_each_closed_hours_distinct_visitors():
    """Per closed hour and filter combination (all, or one value kept): the sorted Visitor ids of the
    consented sessions that started in it; the open hours have none."""
    from analytics.models import Visitor

    a = UserSessionFactory(started_at=START + timedelta(hours=1, minutes=5), device_type="mobile", country="FR")
    UserSessionFactory(  # the same visitor again in the same hour, on another device
        started_at=START + timedelta(hours=1, minutes=40), neuron=a.neuron, anonymous_id=a.anonymous_id
    )
    b = UserSessionFactory(started_at=START + timedelta(hours=1, minutes=50), neuron=a.neuron, utm_source="ads")
    UserSessionFactory(started_at=START + timedelta(hours=1), consent={"analytics": False}, neuron=a.neuron)
    UserSessionFactory(started_at=START + timedelta(hours=3), neuron=a.neuron, ended_at=None)  # still open
    services.rollup_advance(now=START + timedelta(hours=3, minutes=30))  # closed up to the open session's hour
    assert RollupWatermark.objects.get(granularity="visitors").closed_through == START + timedelta(hours=3)
    va = Visitor.objects.get(neuron=a.neuron, anonymous_id=a.anonymous_id).pk
    vb = Visitor.objects.get(neuron=a.neuron, anonymous_id=b.anonymous_id).pk
    hour = START + timedelta(hours=1)
    n = a.neuron_id
    assert _visitor_sets() == {
        (n, hour, ALL, ALL, ALL): sorted([va, vb]),
        (n, hour, "mobile", ALL, ALL): [va],
        (n, hour, "desktop", ALL, ALL): sorted([va, vb]),
        (n, hour, ALL, "FR", ALL): [va],
        (n, hour, ALL, "GB", ALL): sorted([va, vb]),
        (n, hour, ALL, ALL, ""): [va],
        (n, hour, ALL, ALL, "ads"): [vb],
    }
    assert Visitor.objects.count() == 2  # the session without consent has none


def test_visitor_sets_are_rebuilt_with_their_hours_and_built_late_for_existing_rollups():
    """Reconcile rebuilds the sets of hours whose sessions changed; rollups made before visitor sets
    existed (no watermark) get theirs on the next run, and are read from sessions until then."""
    from analytics.models import VisitorRollup

    a = UserSessionFactory(started_at=START + timedelta(hours=1))
    b = UserSessionFactory(started_at=START + timedelta(hours=1, minutes=20), neuron=a.neuron)
    now = START + timedelta(days=2)
    services.rollup_advance(now=now)
    scope = selectors.scope_build(start=START.date(), end=START.date(), now=now)
    assert selectors.metrics_summary(scope=scope, now=now)["consented"]["visitors"]["value"] == 2
    a.delete()
    services.rollup_reconcile(now=now)
    assert selectors.metrics_summary(scope=scope, now=now)["consented"]["visitors"]["value"] == 1
    assert [len(ids) for ids in _visitor_sets().values()] == [1] * len(_visitor_sets())

    VisitorRollup.objects.all().delete()
    RollupWatermark.objects.filter(granularity="visitors").delete()
    UserSessionFactory(started_at=START + timedelta(hours=5), neuron=a.neuron, anonymous_id=b.anonymous_id)
    UserSessionFactory(started_at=START + timedelta(hours=6), neuron=a.neuron)
    services.rollup_build_hours(start=START, end=START + timedelta(days=1), now=now)
    assert selectors.metrics_summary(scope=scope, now=now)["consented"]["visitors"]["value"] == 2
    services.rollup_advance(now=now)
    assert RollupWatermark.objects.get(granularity="visitors").closed_through == START + timedelta(days=1, hours=23)
    assert sum(len(ids) for k, ids in _visitor_sets().items() if k[2:] == (ALL, ALL, ALL)) == 3  # b in two hours
    assert selectors.metrics_summary(scope=scope, now=now)["consented"]["visitors"]["value"] == 2
