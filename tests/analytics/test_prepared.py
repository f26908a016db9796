"""Querysets compiled once per shape and run with each call's values give what the ORM gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.models import DateTimeField
from django.test.utils import CaptureQueriesContext

from analytics.aggregation import (
    Filters,
    event_aggregate,
    event_aggregate_range,
    event_queryset,
    session_aggregate_many,
    session_aggregate_range,
    session_queryset,
)
from analytics.prepared import COMPILED, Compiled, Param
from sessions_app.models import UserSession
from tests.analytics.factories import build_population
from tests.sessions_app.factories import BehaviorEventFactory, UserSessionFactory

pytestmark = pytest.mark.django_db

START = datetime(2026, 10, 30, tzinfo=UTC)
METRICS = ["sessions", "new_sessions", "bounces", "converted_sessions", "duration_seconds", "engagement_sum"]


@pytest.fixture(autouse=True)
def _fresh():
    COMPILED.clear()
    yield
    COMPILED.clear()


def _sorted(counts: dict) -> dict:
    return {d: sorted(rows, key=lambda r: r["value"]) for d, rows in counts.items()}


def _orm(start, end, *, neuron_ids, filters, dimensions, metrics=METRICS):
    qs = session_queryset(start=start, end=end, neuron_ids=neuron_ids, filters=filters)
    return _sorted(session_aggregate_many(queryset=qs, dimensions=dimensions, hour_tz=None, metrics=metrics))


def _compiled(start, end, *, neuron_ids, filters, dimensions, metrics=METRICS):
    counts = session_aggregate_range(
        start=start,
        end=end,
        neuron_ids=neuron_ids,
        filters=filters,
        consented_only=True,
        dimensions=dimensions,
        metrics=metrics,
    )
    return _sorted(counts)


def test_each_range_gives_what_the_orm_gives_from_one_compiled_query():
    pop = build_population(start=START, days=3, sessions=120)
    neuron_ids = tuple(sorted(n.pk for n in pop.neurons))
    dimensions = ["country", "device_type", "engagement"]
    ranges = [(START + timedelta(hours=h), START + timedelta(hours=h + 13)) for h in range(0, 60, 11)]
    for filters in (Filters(), Filters(device_type="mobile")):
        for a, b in ranges:
            expected = _orm(a, b, neuron_ids=neuron_ids, filters=filters, dimensions=dimensions)
            assert _compiled(a, b, neuron_ids=neuron_ids, filters=filters, dimensions=dimensions) == expected
    # One build per shape (filters), every later range only binds its values.
    assert COMPILED.misses == 2 and COMPILED.hits == 2 * len(ranges) - 2


def test_event_counts_of_each_range_are_what_the_orm_gives():
    pop = build_population(start=START, days=3, sessions=120)
    neuron_ids = tuple(sorted(n.pk for n in pop.neurons))
    ranges = [(START + timedelta(hours=h), START + timedelta(hours=h + 17)) for h in range(0, 60, 15)]
    for dimension in ("event_type", "event_name", "page", "conversions"):
        for filters in (Filters(), Filters(country="DE")):
            for a, b in ranges:
                qs = event_queryset(start=a, end=b, neuron_ids=neuron_ids, filters=filters)
                expected = sorted(event_aggregate(queryset=qs, dimension=dimension, hour_tz=None), key=str)
                compiled = event_aggregate_range(
                    start=a, end=b, neuron_ids=neuron_ids, filters=filters, dimension=dimension
                )
                assert sorted(compiled, key=str) == expected, (dimension, filters, a)
    assert COMPILED.misses == 8


def test_a_run_is_one_query_and_its_values_are_prepared_by_their_field():
    session = UserSessionFactory(started_at=START + timedelta(minutes=30), country="DE")
    ids = (session.neuron_id,)
    args = {"neuron_ids": ids, "filters": Filters(), "dimensions": ["country"], "metrics": ["sessions"]}
    _compiled(START, START + timedelta(hours=1), **args)
    with CaptureQueriesContext(connection) as ctx:
        counts = _compiled(START, START + timedelta(hours=1), **args)
    assert len(ctx) == 1
    assert counts["country"] == [{"value": "DE", "sessions": 1}]
    assert _compiled(START + timedelta(hours=1), START + timedelta(hours=2), **args)["country"] == []


def test_a_changed_conversion_setting_is_a_new_query(settings):
    session = UserSessionFactory(started_at=START + timedelta(minutes=5))
    BehaviorEventFactory(session=session, event_type="custom", event_name="purchase", timestamp=START)
    args = {
        "neuron_ids": (session.neuron_id,),
        "filters": Filters(),
        "dimensions": ["country"],
        "metrics": ["converted_sessions"],
    }
    end = START + timedelta(hours=1)
    settings.ANALYTICS_CONVERSION_EVENT_TYPES = ["conversion"]
    settings.ANALYTICS_CONVERSION_EVENT_NAMES = []
    assert _compiled(START, end, **args)["country"][0]["converted_sessions"] == 0
    settings.ANALYTICS_CONVERSION_EVENT_NAMES = ["purchase"]
    assert _compiled(START, end, **args)["country"][0]["converted_sessions"] == 1


def test_compiled_rows_are_named_and_converted_as_the_querysets_would_be():
    session = UserSessionFactory(started_at=START, country="FR")
    moment = DateTimeField()
    qs = (
        UserSession.objects.filter(started_at__gte=Param("start", moment), started_at__lt=Param("end", moment))
        .values("country", "started_at", "consent")
        .order_by("country")
    )
    compiled = Compiled(qs)
    rows = compiled.rows(start=START, end=START + timedelta(seconds=1))
    assert rows == [{"country": "FR", "started_at": START, "consent": session.consent}]
    assert rows[0]["started_at"].utcoffset() == timedelta(0)
    assert compiled.rows(start=START + timedelta(seconds=1), end=START + timedelta(hours=1)) == []
