"""Reads for analytics. Plain functions returning dicts and lists (camelCase keys).

Every additive number is read in three parts: daily rollups for closed UTC days
that fall wholly inside one requested bucket, hourly rollups for the other
closed hours, and raw rows (through the same aggregation functions the rollups
were built with) for the open period. Distinct visitors are the union of the
closed hours' visitor sets and the open period's sessions. Retention, funnels
and journeys need identities and order: they read session sequences and the
sessions and events tables.
"""

from __future__ import annotations

import bisect
import functools
import json
import operator
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    BigIntegerField,
    BooleanField,
    Case,
    CharField,
    Count,
    Exists,
    F,
    Func,
    IntegerField,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import TruncDate, TruncDay, TruncHour, TruncWeek
from django.utils import timezone

from analytics.aggregation import (
    ALL_SESSIONS_DIMENSIONS,
    CONSENT_PURPOSES,
    FILTER_FIELDS,
    HOURLY_DIMENSIONS,
    NAME_SEPARATOR,
    Filters,
    all_neuron_ids,
    consented_sessions,
    dimension_supports,
    event_aggregate,
    event_aggregate_range,
    event_queryset,
    is_session_dimension,
    metrics_of,
    session_aggregate_many,
    session_aggregate_range,
    session_queryset,
)
from analytics.day_cache import DAY_CACHE, DAY_RESULT_CACHE, DayPayload
from analytics.models import (
    ALL,
    Action,
    DailyRollup,
    Granularity,
    HourlyRollup,
    RollupBase,
    RollupWatermark,
    SequenceDay,
    SessionSequence,
    Visitor,
    VisitorRollup,
)
from analytics.prepared import COMPILED
from analytics.rollup_cache import ROLLUP_CACHE, VISITOR_SET_CACHE
from analytics.sequences import (
    DAY_HEADER_DTYPE,
    EPOCH,
    VISITOR_IDS_DTYPE,
    FunnelReach,
    Stream,
    epoch_us,
    funnel_counts,
    funnel_reach,
    funnel_reach_with,
    journey_graph_from_trails,
    session_trails,
    unpack,
)
from config.api.errors import ValidationFailed
from federation.models import Neuron
from personalization.selectors import rule_segments_summary
from sessions_app.engagement import (
    DEPTH_SATURATION,
    DURATION_SATURATION,
    INTERACTION_SATURATION,
    WEIGHTS,
)
from sessions_app.event_input import PAGE_VIEW_TYPES
from sessions_app.models import AnonymousTrafficCount, BehaviorEvent, UserSession

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
MAX_HOURLY_BUCKETS = 31 * 24 + 1


# ---------------------------------------------------------------------------
# Scope: the period, time zone, site and filters of one request
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    start: datetime  # aware, inclusive
    end: datetime  # aware, exclusive
    tz: ZoneInfo
    neuron_ids: tuple[int, ...] | None = None  # None: every site
    filters: Filters = field(default_factory=Filters)

    @property
    def previous(self) -> Scope:
        """The period of the same length just before this one."""
        return replace(self, start=self.start - (self.end - self.start), end=self.start)

    def describe(self) -> dict[str, Any]:
        return {
            "from": self.start.astimezone(self.tz).isoformat(),
            "to": self.end.astimezone(self.tz).isoformat(),
            "tz": self.tz.key,
        }


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=tz).astimezone(UTC)


# Reports look beyond their range (the previous period, whole weeks and local days): a range
# far from the calendar's ends keeps all of that inside what dates can hold.
RANGE_LIMITS = (datetime(1900, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC))
RANGE_LIMITS_MESSAGE = "Must fall between 1900-01-01 and 9000-01-01."


def scope_build(
    *,
    start: date | datetime | None = None,
    end: date | datetime | None = None,
    tz: str = "UTC",
    neuron_slug: str | None = None,
    device_type: str | None = None,
    country: str | None = None,
    utm_source: str | None = None,
    now: datetime | None = None,
) -> Scope:
    """Resolve request parameters into a Scope; bad values raise a 400 problem naming the field.

    Dates are whole local days (`to` inclusive); date-times are instants on a
    whole hour (`to` exclusive). Without `from`/`to`: the last 30 local days
    including today.
    """
    now = now or timezone.now()
    errors: dict[str, list[str]] = {}
    try:
        zone = ZoneInfo(tz)
    except (KeyError, ValueError):
        raise ValidationFailed("Unknown time zone.", errors={"tz": ["Use an IANA time zone name."]}) from None

    def instant(value: date | datetime, *, is_end: bool, name: str) -> datetime | None:
        try:
            if isinstance(value, datetime):
                moment = value if timezone.is_aware(value) else value.replace(tzinfo=zone)
                moment = moment.astimezone(UTC)
                if moment.minute or moment.second or moment.microsecond:
                    errors[name] = ["Must fall on a whole hour."]
                    return None
            else:
                moment = _local_midnight(value + DAY if is_end else value, zone)
        except OverflowError:  # a day or a zone's offset away from the calendar's first or last day
            moment = None
        if moment is None or not RANGE_LIMITS[0] <= moment <= RANGE_LIMITS[1]:
            errors[name] = [RANGE_LIMITS_MESSAGE]
            return None
        return moment

    end_at = instant(end, is_end=True, name="to") if end is not None else None
    if end is None:
        end_at = _local_midnight(now.astimezone(zone).date() + DAY, zone)
    start_at = instant(start, is_end=False, name="from") if start is not None else None
    if start is None and end_at is not None:
        start_at = _local_midnight((end_at - DAY).astimezone(zone).date() - timedelta(days=29), zone)
    if start_at is not None and end_at is not None:
        if start_at >= end_at:
            errors["from"] = ["Must be before `to`."]
        elif end_at - start_at > timedelta(days=settings.ANALYTICS_MAX_RANGE_DAYS):
            errors["to"] = [f"The range may span at most {settings.ANALYTICS_MAX_RANGE_DAYS} days."]
    neuron_ids = None
    if neuron_slug is None:
        neuron_ids = all_neuron_ids()
    else:
        neuron = Neuron.objects.filter(slug=neuron_slug).only("pk").first()
        if neuron is None:
            errors["neuronId"] = ["Unknown neuron."]
        else:
            neuron_ids = (neuron.pk,)
    if errors:
        raise ValidationFailed("Invalid analytics parameters; see errors.", errors=errors)
    assert start_at is not None and end_at is not None
    return Scope(
        start=start_at,
        end=end_at,
        tz=zone,
        neuron_ids=neuron_ids,
        filters=Filters(device_type=device_type, country=country, utm_source=utm_source),
    )


def bucket_bounds(scope: Scope, interval: str | None) -> list[datetime]:
    """Bucket edges in UTC: [start, ..., end]. Day buckets follow local midnights (DST included)."""
    if interval is None:
        return [scope.start, scope.end]
    bounds = [scope.start]
    cursor = scope.start
    while cursor < scope.end:
        if interval == "hour":
            cursor = cursor + HOUR
        else:
            cursor = _local_midnight(cursor.astimezone(scope.tz).date() + DAY, scope.tz)
        bounds.append(min(cursor, scope.end))
    return bounds


# ---------------------------------------------------------------------------
# Reading additive counts: rollups for closed periods, raw rows for the rest
# ---------------------------------------------------------------------------


@dataclass
class SourcePlan:
    daily: list[tuple[datetime, datetime]]
    hourly: list[tuple[datetime, datetime]]
    raw: list[tuple[datetime, datetime]]


def _merge(intervals: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    for s, e in sorted(i for i in intervals if i[0] < i[1]):
        if out and out[-1][1] >= s:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _ceil_day(moment: datetime) -> datetime:
    floor = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return floor if floor == moment else floor + DAY


def source_plan(
    bounds: Sequence[datetime],
    *,
    hourly_through: datetime | None,
    daily_through: datetime | None,
    hourly_from: datetime | None = None,
) -> SourcePlan:
    """Which source answers which part of the range.

    Hourly rows are usable only when every bucket edge is a whole UTC hour (time
    zones with half-hour offsets read raw rows), daily rows only for UTC days
    lying wholly inside one bucket. Breakdown dimensions have hourly rows only
    from `hourly_from` (the hours no daily rollup covers yet); what neither
    daily nor hourly rows can answer is read raw.
    """
    bounds = [b.astimezone(UTC) for b in bounds]
    aligned = all(b.minute == 0 and b.second == 0 and b.microsecond == 0 for b in bounds)
    if hourly_through is None or not aligned:
        return SourcePlan([], [], [(bounds[0], bounds[-1])])
    daily_ranges: list[tuple[datetime, datetime]] = []
    hourly_ranges: list[tuple[datetime, datetime]] = []
    raw: list[tuple[datetime, datetime]] = []
    for b0, b1 in zip(bounds, bounds[1:], strict=False):
        closed_end = min(b1, max(b0, hourly_through))
        raw.append((closed_end, b1))
        d0 = _ceil_day(b0)
        d1 = min(closed_end.replace(hour=0, minute=0, second=0, microsecond=0), daily_through or d0)
        if d0 < d1:
            daily_ranges.append((d0, d1))
            rest = [(b0, d0), (d1, closed_end)]
        else:
            rest = [(b0, closed_end)]
        for s, e in rest:
            cut = s if hourly_from is None else min(max(hourly_from, s), e)
            raw.append((s, cut))
            hourly_ranges.append((cut, e))
    return SourcePlan(_merge(daily_ranges), _merge(hourly_ranges), _merge(raw))


@dataclass(frozen=True)
class _Watermarks:
    hourly_through: datetime | None
    daily_through: datetime | None
    # What the rollup cache keys on: the hours' and days' watermarks and generations.
    version: tuple


def _watermarks() -> _Watermarks:
    # The row's id too: a watermark deleted and built again starts from generation 0 again.
    compiled = COMPILED.get_or_build(
        ("watermarks",), lambda: RollupWatermark.objects.values("granularity", "closed_through", "generation", "pk")
    )
    marks = {row["granularity"]: (row["closed_through"], row["generation"], row["pk"]) for row in compiled.rows()}
    hour, day = marks.get(Granularity.HOUR), marks.get(Granularity.DAY)
    return _Watermarks(
        hourly_through=hour[0] if hour else None, daily_through=day[0] if day else None, version=(hour, day)
    )


def _ranges_q(ranges: list[tuple[datetime, datetime]], name: str) -> Q:
    q = Q()
    for s, e in ranges:
        q |= Q(**{f"{name}__gte": s, f"{name}__lt": e})
    return q


Counts = dict[str, dict[str, float]]  # value -> metric -> count


def read_counts(
    scope: Scope,
    dimensions: Sequence[str],
    bounds: Sequence[datetime] | None = None,
    *,
    metrics: Sequence[str] | None = None,
) -> dict[str, list[Counts]]:
    """Additive counts per dimension, per bucket, per value.

    Returns {dimension: [bucket 0 counts, bucket 1 counts, ...]}. With `metrics`,
    only those session counts (and sessions) are read; the others stay zero.
    """
    bounds = list(bounds or [scope.start, scope.end])
    n_buckets = len(bounds) - 1
    marks = _watermarks()
    hourly_through, daily_through = marks.hourly_through, marks.daily_through
    out: dict[str, list[Counts]] = {
        d: [defaultdict(lambda: defaultdict(float)) for _ in range(n_buckets)] for d in dimensions
    }

    def bucket_of(moment: datetime) -> int:
        return min(max(bisect.bisect_right(bounds, moment) - 1, 0), n_buckets - 1)

    def add(dimension: str, bucket: int, value: str, row: dict[str, Any]) -> None:
        cell = out[dimension][bucket][value]
        for m in metrics_of(dimension):
            if m in row:
                cell[m] += row[m] or 0

    def wanted(dimension: str) -> list[str]:
        return [m for m in metrics_of(dimension) if metrics is None or m in metrics or m in ("sessions", "events")]

    f = scope.filters
    groups: dict[tuple[bool, bool], list[str]] = defaultdict(list)
    for dimension in dimensions:
        groups[(dimension in HOURLY_DIMENSIONS, dimension_supports(dimension, f))].append(dimension)
    # Groups whose raw parts cover the same ranges read them together (one query over the sessions).
    raw_work: dict[tuple[tuple[datetime, datetime], ...], list[str]] = defaultdict(list)
    for (has_hourly, has_rollups), dims in groups.items():
        plan = source_plan(
            bounds,
            hourly_through=hourly_through if has_rollups else None,
            daily_through=daily_through,
            hourly_from=None if has_hourly else daily_through,
        )
        for model, ranges in ((DailyRollup, plan.daily), (HourlyRollup, plan.hourly)):
            if not ranges:
                continue
            metric_names = tuple(sorted({m for d in dims for m in wanted(d)}))
            # A few buckets: the database sums each bucket's rows, instead of returning one
            # row per hour or day.
            by_bucket = 1 < n_buckets <= MAX_SQL_BUCKETS
            key = (
                model._meta.label,
                marks.version,
                tuple(ranges),
                tuple(dims),
                metric_names,
                f,
                scope.neuron_ids,
                tuple(bounds) if by_bucket else n_buckets > 1,
            )
            read = functools.partial(
                _rollup_sums,
                model,
                ranges,
                dims,
                metric_names,
                f,
                scope.neuron_ids,
                bounds=bounds if by_bucket else None,
                per_period=n_buckets > 1,
            )
            for row in ROLLUP_CACHE.get_or_read(key, read):
                if "bucket" in row:
                    bucket = row["bucket"]
                else:
                    bucket = bucket_of(row["period_start"]) if n_buckets > 1 else 0
                add(row["dimension"], bucket, row["value"], row)
        raw_work[tuple(plan.raw)].extend(dims)
    for raw_ranges, dims in raw_work.items():
        for start, end in raw_ranges:
            # A range inside one bucket (the open hours of a summary) is counted without grouping by hour.
            single = bucket_of(start) if bucket_of(start) == bucket_of(end - timedelta(microseconds=1)) else None
            hour_tz = scope.tz if single is None else None
            raw_rows: dict[str, list[dict[str, Any]]] = {}
            # Session dimensions over the same sessions (consented, or all) share one query.
            for consented_only in (True, False):
                session_dims = [
                    d for d in dims if is_session_dimension(d) and (d not in ALL_SESSIONS_DIMENSIONS) == consented_only
                ]
                if not session_dims:
                    continue
                # Dimensions over every session only count them (ALL_SESSIONS_DIMENSIONS).
                wanted_metrics = metrics if consented_only else ["sessions"]
                if single is not None:
                    counts = session_aggregate_range(
                        start=start,
                        end=end,
                        neuron_ids=scope.neuron_ids,
                        filters=f,
                        consented_only=consented_only,
                        dimensions=session_dims,
                        metrics=wanted_metrics,
                    )
                else:
                    sq = session_queryset(
                        start=start, end=end, neuron_ids=scope.neuron_ids, filters=f, consented_only=consented_only
                    )
                    counts = session_aggregate_many(
                        queryset=sq, dimensions=session_dims, hour_tz=hour_tz, metrics=wanted_metrics
                    )
                raw_rows.update(counts)
            for dimension in dims:
                if is_session_dimension(dimension):
                    continue
                if single is not None:
                    raw_rows[dimension] = event_aggregate_range(
                        start=start, end=end, neuron_ids=scope.neuron_ids, filters=f, dimension=dimension
                    )
                else:
                    eq = event_queryset(start=start, end=end, neuron_ids=scope.neuron_ids, filters=f)
                    raw_rows[dimension] = event_aggregate(queryset=eq, dimension=dimension, hour_tz=hour_tz)
            for dimension, rows in raw_rows.items():
                for row in rows:
                    add(dimension, bucket_of(row["hour"]) if single is None else single, row["value"], row)
    return out


def _rollup_sums(
    model: type[RollupBase],
    ranges: list[tuple[datetime, datetime]],
    dims: Sequence[str],
    metric_names: Sequence[str],
    f: Filters,
    neuron_ids: tuple[int, ...] | None,
    *,
    bounds: Sequence[datetime] | None,
    per_period: bool,
) -> list[dict[str, Any]]:
    """Rollup rows of `ranges` summed per dimension and value: per bucket of `bounds` when
    given, else per period_start when the report has several buckets, else over the range."""
    qs = model.objects.filter(
        _ranges_q(ranges, "period_start"),
        dimension__in=dims,
        device_type=f.device_type if f.device_type is not None else ALL,
        country=f.country if f.country is not None else ALL,
        utm_source=f.utm_source if f.utm_source is not None else ALL,
    )
    if neuron_ids is not None:
        qs = qs.filter(neuron_id__in=neuron_ids)
    group = ["dimension", "value"]
    if bounds is not None:
        qs = qs.annotate(bucket=_bucket_case(bounds))
        group.append("bucket")
    elif per_period:
        group.append("period_start")
    return list(qs.values(*group).annotate(**{m: Sum(m) for m in metric_names}).order_by())


# Up to this many buckets (a period and the previous one), rollup rows are summed per bucket by the
# database; with more (a month's days), building the CASE costs more than the rows it saves.
MAX_SQL_BUCKETS = 4


def _bucket_case(bounds: Sequence[datetime]) -> Case:
    """A rollup row's bucket as read_counts' bucket_of finds it: the last bucket starting at or
    before the row's period (before the first: the first; after the last: the last)."""
    whens = [When(period_start__lt=b, then=Value(i)) for i, b in enumerate(bounds[1:-1])]
    return Case(*whens, default=Value(len(bounds) - 2), output_field=IntegerField())


def _zero(dimension: str) -> dict[str, float]:
    return dict.fromkeys(metrics_of(dimension), 0)


def _ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 6) if denominator else 0.0


# ---------------------------------------------------------------------------
# Distinct visitors: from the sessions table, never summed from per-day counts
# ---------------------------------------------------------------------------


def _visitors_queryset(scope: Scope):
    return session_queryset(start=scope.start, end=scope.end, neuron_ids=scope.neuron_ids, filters=scope.filters)


def visitors_count(scope: Scope) -> int:
    """Distinct visitors (anonymous ids per site) with a session starting in the range, counted
    from the sessions table."""
    qs = _visitors_queryset(scope)
    if scope.neuron_ids is not None and len(scope.neuron_ids) == 1:
        return qs.aggregate(n=Count("anonymous_id", distinct=True))["n"]
    return qs.values("neuron_id", "anonymous_id").distinct().count()


def visitors_series(scope: Scope, interval: str, bounds: Sequence[datetime]) -> list[int]:
    """Distinct visitors per hour or local day, counted from the sessions table."""
    trunc = TruncHour if interval == "hour" else TruncDay
    counts = [0] * (len(bounds) - 1)
    rows = (
        _visitors_queryset(scope)
        .annotate(bucket=trunc("started_at", tzinfo=scope.tz))
        .values("bucket", "neuron_id")
        .annotate(n=Count("anonymous_id", distinct=True))
        .order_by()
    )
    for row in rows:
        i = min(max(bisect.bisect_right(bounds, row["bucket"]) - 1, 0), len(counts) - 1)
        counts[i] += row["n"]  # distinct per site: visitors of two sites are two visitors
    return counts


def visitors_per_bucket(scope: Scope, bounds: Sequence[datetime], interval: str | None = None) -> list[int]:
    """Distinct visitors with a session starting in each bucket [bounds[i], bounds[i + 1]).

    Closed hours read their visitor sets (VisitorRollup: sorted Visitor ids), the open part
    the sessions, whose visitors are looked up in the Visitor table: a bucket's count is the
    size of the union, so a visitor seen in several hours, or in closed and open ones, counts
    once. Zones off the whole hour and two or three filters read the sessions table only
    (by `interval`, or per bucket without one)."""
    bounds = list(bounds)
    n_buckets = len(bounds) - 1
    f = scope.filters
    mark, version = _visitors_watermark()
    plan = source_plan(bounds, hourly_through=mark if dimension_supports("total", f) else None, daily_through=None)
    if not plan.hourly:
        if interval is not None:
            return visitors_series(scope, interval, bounds)
        return [visitors_count(replace(scope, start=a, end=b)) for a, b in zip(bounds, bounds[1:], strict=False)]

    edges = [epoch_us(b) for b in bounds]

    def bucket_of(t_us: int) -> int:
        return min(max(bisect.bisect_right(edges, t_us) - 1, 0), n_buckets - 1)

    def read_closed() -> tuple[np.ndarray, ...]:
        chunks: list[list[np.ndarray]] = [[] for _ in range(n_buckets)]
        for hour, ids in _binary_values(
            _visitor_sets(scope).filter(_ranges_q(plan.hourly, "period_start")), "period_start", "ids"
        ):
            chunks[bucket_of(epoch_us(hour))].append(np.frombuffer(ids, dtype=VISITOR_IDS_DTYPE))
        return tuple(np.unique(np.concatenate(c)) if c else np.empty(0, dtype=VISITOR_IDS_DTYPE) for c in chunks)

    cache_key = ("visitors", version, scope.neuron_ids, f, tuple(plan.hourly), tuple(edges))
    closed = VISITOR_SET_CACHE.get_or_read(cache_key, read_closed)
    # Visitors of the open part without a Visitor id yet are in no set: counted by (site, anonymous id).
    fresh: list[set[tuple[int, str]]] = [set() for _ in range(n_buckets)]
    known: list[list[int]] = [[] for _ in range(n_buckets)]
    for start, end in plan.raw:
        for t, key, neuron_id, anonymous_id in _sessions_with_visitor_ids(scope, start, end):
            b = bucket_of(t)
            if key is None:
                fresh[b].add((neuron_id, anonymous_id))
            else:
                known[b].append(key)
    return [len(closed[b]) + _not_in_sorted(known[b], closed[b]) + len(fresh[b]) for b in range(n_buckets)]


def _not_in_sorted(ids: list[int], sorted_ids: np.ndarray) -> int:
    """How many distinct values of `ids` the sorted, distinct `sorted_ids` do not hold."""
    if not ids:
        return 0
    wanted = np.unique(np.array(ids, dtype=VISITOR_IDS_DTYPE))
    if not len(sorted_ids):
        return len(wanted)
    at = np.minimum(np.searchsorted(sorted_ids, wanted), len(sorted_ids) - 1)
    return int(np.count_nonzero(sorted_ids[at] != wanted))


def _visitors_watermark() -> tuple[datetime | None, tuple | None]:
    """The visitor sets' watermark, and what their cached unions key on: it, its generation, its row."""
    mark = (
        RollupWatermark.objects.filter(granularity=Granularity.VISITORS)
        .values_list("closed_through", "generation", "pk")
        .first()
    )
    return (mark[0], mark) if mark is not None else (None, None)


def _visitor_sets(scope: Scope):
    """The scope's VisitorRollup rows: its sites, its filter value (or none)."""
    f = scope.filters
    sets = VisitorRollup.objects.filter(
        device_type=f.device_type if f.device_type is not None else ALL,
        country=f.country if f.country is not None else ALL,
        utm_source=f.utm_source if f.utm_source is not None else ALL,
    )
    if scope.neuron_ids is not None:
        sets = sets.filter(neuron_id__in=scope.neuron_ids)
    return sets


def _sessions_with_visitor_ids(scope: Scope, start: datetime, end: datetime) -> Iterator[tuple]:
    """(start in microseconds, Visitor id or None, neuron id, anonymous id) of the scope's consented
    sessions that started in [start, end)."""
    sessions = session_queryset(start=start, end=end, neuron_ids=scope.neuron_ids, filters=scope.filters).annotate(
        visitor_key=Subquery(
            Visitor.objects.filter(neuron_id=OuterRef("neuron_id"), anonymous_id=OuterRef("anonymous_id"))
            .order_by()
            .values("pk")[:1]
        )
    )
    if connection.vendor == "postgresql":
        # Whole microseconds computed by PostgreSQL: parsing thousands of timestamps costs more.
        rows = sessions.annotate(t_us=_EpochMicroseconds("started_at"))
        yield from rows.values_list("t_us", "visitor_key", "neuron_id", "anonymous_id")
        return
    for t, *rest in sessions.values_list("started_at", "visitor_key", "neuron_id", "anonymous_id"):
        yield (epoch_us(t), *rest)


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------

METRIC_NAMES = (
    "sessions",
    "visitors",
    "newSessions",
    "pageViews",
    "events",
    "conversions",
    "convertedSessions",
    "avgSessionDuration",
    "bounceRate",
    "pagesPerSession",
    "conversionRate",
    "avgEngagement",
)


def _derive(total: dict[str, float], events: Counts, conversions: Counts) -> dict[str, float]:
    sessions = total["sessions"]
    return {
        "sessions": int(sessions),
        "newSessions": int(total["new_sessions"]),
        "pageViews": int(sum(events.get(t, {}).get("events", 0) for t in PAGE_VIEW_TYPES)),
        "events": int(sum(v["events"] for v in events.values())),
        "conversions": int(conversions.get("", {}).get("events", 0)),
        "convertedSessions": int(total["converted_sessions"]),
        "avgSessionDuration": round(total["duration_seconds"] / sessions, 3) if sessions else 0.0,
        "bounceRate": _ratio(total["bounces"], sessions),
        "pagesPerSession": _ratio(total["page_view_sum"], sessions),
        "conversionRate": _ratio(total["converted_sessions"], sessions),
        "avgEngagement": round(total["engagement_sum"] / sessions, 3) if sessions else 0.0,
    }


def _metrics_with_previous(scope: Scope) -> tuple[dict[str, float], dict[str, float]]:
    """This period's numbers and the previous period's, read together as two buckets."""
    previous = scope.previous
    counts = read_counts(scope, ["total", "event_type", "conversions"], [previous.start, scope.start, scope.end])
    visitors = visitors_per_bucket(scope, [previous.start, scope.start, scope.end])
    out = []
    for bucket in (1, 0):
        total = counts["total"][bucket].get("", _zero("total"))
        values = _derive(total, counts["event_type"][bucket], counts["conversions"][bucket])
        values["visitors"] = visitors[bucket]
        out.append(values)
    return out[0], out[1]


def active_sessions_count(scope: Scope, *, now: datetime) -> int:
    qs = consented_sessions().filter(
        scope.filters.session_q(),
        ended_at__isnull=True,
        last_activity_at__gte=now - settings.ANALYTICS_ACTIVE_WINDOW,
    )
    if scope.neuron_ids is not None:
        qs = qs.filter(neuron_id__in=scope.neuron_ids)
    return qs.count()


def anonymous_traffic(scope: Scope) -> dict[str, Any] | None:
    """Traffic counted without analytics consent. Kept per day, path, device and country
    only, so it follows the range's local dates and cannot be filtered by UTM source."""
    if scope.filters.utm_source is not None:
        return None
    first = scope.start.astimezone(scope.tz).date()
    last = (scope.end - timedelta(microseconds=1)).astimezone(scope.tz).date()
    qs = AnonymousTrafficCount.objects.filter(day__gte=first, day__lte=last)
    if scope.neuron_ids is not None:
        qs = qs.filter(neuron_id__in=scope.neuron_ids)
    if scope.filters.device_type is not None:
        qs = qs.filter(device_type=scope.filters.device_type)
    if scope.filters.country is not None:
        qs = qs.filter(country=scope.filters.country)
    totals = qs.aggregate(page_views=Sum("page_views"), events=Sum("events"))
    return {"pageViews": totals["page_views"] or 0, "events": totals["events"] or 0}


def _change(current: float, previous: float) -> float | None:
    return round((current - previous) / previous, 6) if previous else None


def metrics_summary(*, scope: Scope, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    current, previous = _metrics_with_previous(scope)
    anon_now = anonymous_traffic(scope)
    anon_prev = anonymous_traffic(scope.previous)
    return {
        "period": scope.describe(),
        "previousPeriod": scope.previous.describe(),
        "activeSessions": active_sessions_count(scope, now=now),
        "consented": {
            name: {"value": current[name], "previous": previous[name], "change": _change(current[name], previous[name])}
            for name in METRIC_NAMES
        },
        "anonymous": None
        if anon_now is None or anon_prev is None
        else {
            name: {
                "value": anon_now[name],
                "previous": anon_prev[name],
                "change": _change(anon_now[name], anon_prev[name]),
            }
            for name in ("pageViews", "events")
        },
    }


# ---------------------------------------------------------------------------
# Trends
# ---------------------------------------------------------------------------

TREND_METRICS = METRIC_NAMES

# What each trend metric reads: the session counts (besides sessions) and the event dimensions.
# A series of sessions runs neither the new-visitor nor the conversion subquery over raw rows.
TREND_SOURCES: dict[str, tuple[list[str], list[str]]] = {
    "sessions": (["sessions"], []),
    "newSessions": (["new_sessions"], []),
    "pageViews": (["sessions"], ["event_type"]),
    "events": (["sessions"], ["event_type"]),
    "conversions": (["sessions"], ["conversions"]),
    "convertedSessions": (["converted_sessions"], []),
    "avgSessionDuration": (["duration_seconds"], []),
    "bounceRate": (["bounces"], []),
    "pagesPerSession": (["page_view_sum"], []),
    "conversionRate": (["converted_sessions"], []),
    "avgEngagement": (["engagement_sum"], []),
}


def trends_series(*, scope: Scope, metric: str, interval: str) -> dict[str, Any]:
    bounds = bucket_bounds(scope, interval)
    if len(bounds) > MAX_HOURLY_BUCKETS:
        raise ValidationFailed("Too many buckets.", errors={"interval": ["Hourly series may span at most 31 days."]})
    if metric == "visitors":
        values: list[float] = list(visitors_per_bucket(scope, bounds, interval))
    else:
        session_metrics, event_dimensions = TREND_SOURCES[metric]
        counts = read_counts(scope, ["total", *event_dimensions], bounds, metrics=session_metrics)
        empty: list[Counts] = [{} for _ in range(len(bounds) - 1)]
        values = [
            _derive(
                counts["total"][i].get("", _zero("total")),
                counts.get("event_type", empty)[i],
                counts.get("conversions", empty)[i],
            )[metric]
            for i in range(len(bounds) - 1)
        ]
    return {
        "period": scope.describe(),
        "metric": metric,
        "interval": interval,
        "series": [
            {"start": bounds[i].astimezone(scope.tz).isoformat(), "value": values[i]} for i in range(len(bounds) - 1)
        ],
    }


# ---------------------------------------------------------------------------
# Breakdowns: pages, referrers, events, engagement, devices, geography, segments
# ---------------------------------------------------------------------------


def _ranked(cells: Counts, metric: str, limit: int | None, *, label: str = "value") -> list[dict[str, Any]]:
    total = sum(c[metric] for c in cells.values())
    rows = sorted(cells.items(), key=lambda kv: (-kv[1][metric], kv[0]))
    if limit is not None:
        rows = rows[:limit]
    return [{label: value, metric_key(metric): int(c[metric]), "share": _ratio(c[metric], total)} for value, c in rows]


def metric_key(metric: str) -> str:
    return {"events": "count", "sessions": "sessions"}[metric]


def pages_report(*, scope: Scope, limit: int) -> dict[str, Any]:
    counts = read_counts(scope, ["page", "entry_page", "exit_page"], metrics=["sessions"])
    return {
        "period": scope.describe(),
        "top": [
            {"path": r["path"], "pageViews": r["count"], "share": r["share"]}
            for r in _ranked(counts["page"][0], "events", limit, label="path")
        ],
        "entry": _ranked(counts["entry_page"][0], "sessions", limit, label="path"),
        "exit": _ranked(counts["exit_page"][0], "sessions", limit, label="path"),
    }


def referrers_report(*, scope: Scope, limit: int) -> dict[str, Any]:
    dims = ["referrer", "utm_source", "utm_medium", "utm_campaign"]
    counts = read_counts(scope, dims, metrics=["sessions"])
    return {
        "period": scope.describe(),
        "referrers": [
            {"domain": r["value"] or None, "sessions": r["sessions"], "share": r["share"]}
            for r in _ranked(counts["referrer"][0], "sessions", limit)
        ],
        "utm": {
            key: _ranked({v: c for v, c in counts[dim][0].items() if v}, "sessions", limit)
            for key, dim in (("source", "utm_source"), ("medium", "utm_medium"), ("campaign", "utm_campaign"))
        },
    }


def events_report(*, scope: Scope, limit: int) -> dict[str, Any]:
    counts = read_counts(scope, ["event_type", "event_name"])
    names = []
    for r in _ranked(counts["event_name"][0], "events", None):
        event_type, _, name = r["value"].partition(NAME_SEPARATOR)
        if name:
            names.append({"type": event_type, "name": name, "count": r["count"], "share": r["share"]})
    return {
        "period": scope.describe(),
        "types": [
            {"type": r["value"], "count": r["count"], "share": r["share"]}
            for r in _ranked(counts["event_type"][0], "events", limit)
        ],
        "names": names[:limit],
    }


ENGAGEMENT_FORMULA = {
    "expression": "100 * (0.35*D + 0.25*P + 0.25*I + 0.15*C)",
    "weights": WEIGHTS,
    "terms": {
        "D": f"min(duration / {int(DURATION_SATURATION.total_seconds())} s, 1)",
        "P": f"min((page views - 1) / {DEPTH_SATURATION}, 1)",
        "I": f"min(interactions / {INTERACTION_SATURATION}, 1)",
        "C": "1 if the session converted, else 0",
    },
}


def engagement_report(*, scope: Scope) -> dict[str, Any]:
    # Every consented session falls in exactly one bin: the totals are the bins' sums (one read
    # of the rollups instead of two).
    bins = read_counts(scope, ["engagement"], metrics=["sessions", "engagement_sum"])["engagement"][0]
    sessions = sum(cell["sessions"] for cell in bins.values())
    engagement_sum = sum(cell["engagement_sum"] for cell in bins.values())
    return {
        "period": scope.describe(),
        "formula": ENGAGEMENT_FORMULA,
        "sessions": int(sessions),
        "average": round(engagement_sum / sessions, 3) if sessions else 0.0,
        "bins": [
            {
                "from": edge,
                "to": edge + 10,
                "sessions": int(bins.get(str(edge), {}).get("sessions", 0)),
                "share": _ratio(bins.get(str(edge), {}).get("sessions", 0), sessions),
            }
            for edge in range(0, 100, 10)
        ],
    }


# What _breakdown reads.
BREAKDOWN_METRICS = ("sessions", "bounces", "converted_sessions")


def _breakdown(cells: Counts, limit: int | None = None) -> list[dict[str, Any]]:
    total = sum(c["sessions"] for c in cells.values())
    rows = sorted(cells.items(), key=lambda kv: (-kv[1]["sessions"], kv[0]))[:limit]
    return [
        {
            "value": value,
            "sessions": int(c["sessions"]),
            "share": _ratio(c["sessions"], total),
            "bounceRate": _ratio(c["bounces"], c["sessions"]),
            "conversionRate": _ratio(c["converted_sessions"], c["sessions"]),
        }
        for value, c in rows
    ]


def devices_report(*, scope: Scope) -> dict[str, Any]:
    counts = read_counts(scope, ["device_type", "browser", "os"], metrics=BREAKDOWN_METRICS)
    return {
        "period": scope.describe(),
        "deviceTypes": _breakdown(counts["device_type"][0]),
        "browsers": _breakdown(counts["browser"][0]),
        "operatingSystems": _breakdown(counts["os"][0]),
    }


def geographic_report(*, scope: Scope) -> dict[str, Any]:
    counts = read_counts(scope, ["country"], metrics=BREAKDOWN_METRICS)
    return {
        "period": scope.describe(),
        "countries": _breakdown(counts["country"][0]),
        # The bundled GeoIP database resolves countries only; no region is stored.
        "regions": [],
        "regionsAvailable": False,
    }


def segments_report(*, scope: Scope) -> dict[str, Any]:
    """Built-in (system) segments, then the operators' rule segments from personalization.

    Consent state counts every session, consented or not: it is a number per purpose
    and nothing else. System segments are counted over the period; a rule segment's
    size is its list at the last materialization (personalization's job), so it has
    no period share."""
    counts = read_counts(scope, ["total", "device_type", "country", "consent_state"], metrics=["new_sessions"])
    total = counts["total"][0].get("", _zero("total"))
    sessions = total["sessions"]
    segments: list[dict[str, Any]] = [
        {
            "id": "visitors:new",
            "kind": "newVsReturning",
            "name": "New visitors",
            "sessions": int(total["new_sessions"]),
        },
        {
            "id": "visitors:returning",
            "kind": "newVsReturning",
            "name": "Returning visitors",
            "sessions": int(sessions - total["new_sessions"]),
        },
    ]
    for row in _breakdown(counts["device_type"][0]):
        segments.append(
            {"id": f"device:{row['value']}", "kind": "device", "name": row["value"], "sessions": row["sessions"]}
        )
    for row in _breakdown(counts["country"][0]):
        segments.append(
            {
                "id": f"country:{row['value'] or '--'}",
                "kind": "country",
                "name": row["value"] or "Unknown",
                "sessions": row["sessions"],
            }
        )
    for segment in segments:
        segment["share"] = _ratio(segment["sessions"], sessions)
    states = counts["consent_state"][0]
    consent = {"all": int(sum(c["sessions"] for c in states.values()))}
    for i, purpose in enumerate(CONSENT_PURPOSES):
        consent[purpose] = int(sum(c["sessions"] for v, c in states.items() if len(v) > i and v[i] == "1"))
    for purpose in CONSENT_PURPOSES:
        segments.append(
            {
                "id": f"consent:{purpose}",
                "kind": "consent",
                "name": f"{purpose} consent granted",
                "sessions": consent[purpose],
                "share": _ratio(consent[purpose], consent["all"]),
            }
        )
    for segment in segments:
        segment["system"] = True
    for segment in rule_segments_summary(neuron_ids=scope.neuron_ids):
        segments.append({**segment, "share": None, "system": False})
    return {"period": scope.describe(), "sessions": int(sessions), "allSessions": consent["all"], "segments": segments}


# ---------------------------------------------------------------------------
# Funnels, journeys, retention: need order and identity, so they read raw rows
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FunnelStep:
    kind: str  # "event" or "page"
    event_type: str = ""
    event_name: str = ""
    path: str = ""

    @property
    def label(self) -> str:
        if self.kind == "page":
            return f"page:{self.path}"
        return f"event:{self.event_type}" + (f":{self.event_name}" if self.event_name else "")

    def q(self) -> Q:
        if self.kind == "page":
            return Q(event_type__in=PAGE_VIEW_TYPES, page_path=self.path)
        q = Q(event_type=self.event_type)
        return q & Q(event_name=self.event_name) if self.event_name else q

    def matches(self, event_type: str, event_name: str, path: str) -> bool:
        if self.kind == "page":
            return event_type in PAGE_VIEW_TYPES and path == self.path
        return event_type == self.event_type and (not self.event_name or event_name == self.event_name)


@contextmanager
def _one_snapshot() -> Iterator[None]:
    """Reads that must agree: the sequences, and the sessions without one, which the rollup job
    turns into sequences meanwhile (a session read in neither, or in both, would be lost or
    doubled). They run in one transaction, on PostgreSQL a repeatable-read one: every statement
    sees the same snapshot. Inside a caller's transaction, its view is kept."""
    if connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield


def _sequence_watermark() -> datetime | None:
    marks = RollupWatermark.objects.filter(granularity=Granularity.SESSION)
    return marks.values_list("closed_through", flat=True).first()


@dataclass
class _Closed:
    """Sequences of closed sessions: per session its id and visitor key, then all their events."""

    sessions: np.ndarray
    visitors: np.ndarray
    counts: np.ndarray
    events: np.ndarray

    @classmethod
    def empty(cls) -> _Closed:
        none = np.zeros(0, dtype=np.int64)
        return cls(none, none, none, unpack(b""))


# A sequence's header as _closed_sequences reads it from PostgreSQL (big-endian, as int8send/int4send write).
_SEQUENCE_HEADER = np.dtype([("session", ">i8"), ("visitor", ">i8"), ("count", ">i4")])

# Closed sequences are read in chunks of 2**SEQUENCE_CHUNK_BITS session ids.
SEQUENCE_CHUNK_BITS = 12

# Beyond this many actions, sequences are not narrowed by their actions (the filter would cost more).
MAX_ACTION_FILTER = 64


@dataclass
class _ClosedParts:
    """The closed sessions with an event in a report's range, in parts (every session in one).

    `load_days()`: whole closed days from their SequenceDay rows, read on demand, so a report
    that holds what it computed from them (DAY_RESULT_CACHE, under `versions`) reads none;
    `others`: the other sessions (recent or stale days), each from its own sequence."""

    versions: tuple[tuple[int, str], ...] | None  # the day rows' (pk, version); None: unnamed
    load_days: Callable[[], list[_Closed]]
    others: _Closed

    @classmethod
    def empty(cls) -> _ClosedParts:
        return cls((), list, _Closed.empty())


def _closed_sequences(
    scope: Scope, closed_through: datetime | None, actions: Sequence[int] | None = None
) -> _ClosedParts:
    """Packed sequences of the sessions with an event in the range: whole closed days from their
    SequenceDay rows, the other sessions (recent or stale days) from their own sequences (given
    `actions`, only those holding at least one of them).

    On PostgreSQL the database concatenates the sessions' sequences in chunks; elsewhere
    they are fetched per session. A session without an anonymous id is its own visitor
    (key: minus its id). Day rows are named by their versions where DAY_CACHE can hold them."""
    if closed_through is None:
        return _ClosedParts.empty()
    days_through = (
        RollupWatermark.objects.filter(granularity=Granularity.SEQUENCE_DAYS)
        .values_list("closed_through", flat=True)
        .first()
    )
    if days_through is None:
        return _ClosedParts((), list, _session_sequences(scope, Q(), actions))
    days = SequenceDay.objects.filter(first_event_at__lt=scope.end, last_event_at__gte=scope.start)
    if scope.neuron_ids is not None:
        days = days.filter(neuron_id__in=scope.neuron_ids)
    # Sessions of the days without a usable row: those since the watermark, and stale days.
    per_session = Q(started_at__gte=days_through)

    def day_q(neuron_id: int, day: datetime) -> Q:
        return Q(neuron_id=neuron_id, started_at__gte=day, started_at__lt=day + DAY)

    if connection.vendor != "postgresql" or DAY_CACHE.limit() <= 0:
        parts = []
        for neuron_id, day, stale, headers, events, labels in _binary_values(
            days, "neuron_id", "day", "stale", "headers", "events", "labels"
        ):
            if stale:
                per_session |= day_q(neuron_id, day)
            else:
                parts.append(_day_sequences(headers, events, labels, scope.filters))
        others = _session_sequences(scope, per_session, actions)
        return _ClosedParts(None, lambda: [p for p in parts if len(p.events)], others)
    listing = _binary_values(days.annotate(version=_ROW_VERSION), "pk", "version", "neuron_id", "day", "stale")
    usable = {pk: (neuron_id, day) for pk, _, neuron_id, day, stale in listing if not stale}
    for _, _, neuron_id, day, stale in listing:
        if stale:
            per_session |= day_q(neuron_id, day)

    def load_days() -> list[_Closed]:
        payloads = _day_payloads({pk: version for pk, version, *_ in listing if pk in usable})
        # A row gone since the listing (outside a snapshot) is read from its sessions' sequences.
        gone = [usable[pk] for pk in usable if pk not in payloads]
        parts = [_day_sequences(p.headers, p.events, p.labels, scope.filters) for p in payloads.values()]
        if gone:
            parts.append(_session_sequences(scope, functools.reduce(operator.or_, (day_q(*d) for d in gone)), actions))
        return [part for part in parts if len(part.events)]

    others = _session_sequences(scope, per_session, actions)
    versions = tuple(sorted((pk, version) for pk, version, _, _, stale in listing if not stale))
    return _ClosedParts(versions, load_days, others)


# A row version on PostgreSQL: the writing transaction and the place in the table (analytics.day_cache).
_ROW_VERSION = RawSQL("xmin::text || ctid::text", (), output_field=CharField())


def _day_payloads(versions: dict[int, str]) -> dict[int, DayPayload]:
    """The payloads of these SequenceDay rows (pk: listed version), in their order, from this
    process's DAY_CACHE where it holds the listed version; only the others are fetched. A row
    gone or changed since the listing is left out."""
    payloads: dict[int, DayPayload] = {}
    for pk, version in versions.items():
        if (payload := DAY_CACHE.get(pk, version)) is not None:
            payloads[pk] = payload
    missing = [pk for pk in versions if pk not in payloads]
    if missing:
        fetched = SequenceDay.objects.filter(pk__in=missing, stale=False).annotate(version=_ROW_VERSION)
        for pk, version, headers, events, labels in _binary_values(
            fetched, "pk", "version", "headers", "events", "labels"
        ):
            labels = json.loads(labels) if isinstance(labels, str) else labels
            payload = DayPayload(bytes(headers), bytes(events), labels)
            DAY_CACHE.put(pk, version, payload)
            if version == versions[pk]:
                payloads[pk] = payload
    return {pk: payloads[pk] for pk in versions if pk in payloads}


def _day_sequences(headers: bytes, events: bytes, labels: Any, filters: Filters) -> _Closed:
    """One SequenceDay's sessions that pass the filters."""
    header = np.frombuffer(headers, dtype=DAY_HEADER_DTYPE)
    packed = unpack(events)
    if isinstance(labels, str):
        labels = json.loads(labels)
    keep = np.ones(len(header), dtype=bool)
    for name in FILTER_FIELDS:
        value = getattr(filters, name)
        if value is not None:
            names = labels.get(name, [])
            keep &= header[name] == (names.index(value) if value in names else -1)
    if not keep.all():
        packed = packed[np.repeat(keep, header["count"])]
        header = header[keep]
    return _Closed(
        header["session"].astype(np.int64),
        header["visitor"].astype(np.int64),
        header["count"].astype(np.int64),
        packed,
    )


def _session_sequences(scope: Scope, sessions: Q, actions: Sequence[int] | None) -> _Closed:
    """The sequences matching `sessions` with an event in the range, one per session."""
    qs = SessionSequence.objects.filter(
        sessions, scope.filters.session_q(), first_event_at__lt=scope.end, last_event_at__gte=scope.start
    )
    if scope.neuron_ids is not None:
        qs = qs.filter(neuron_id__in=scope.neuron_ids)
    if actions is not None and len(actions) <= MAX_ACTION_FILTER:
        if not actions:
            return _Closed.empty()
        holds = Q()
        for action in actions:
            holds |= Q(actions__contains=f" {action} ")
        qs = qs.filter(holds)
    qs = qs.values("session_id", "visitor_id", "event_count", "events").order_by()
    if connection.vendor == "postgresql":
        sql, params = qs.query.sql_with_params()
        # Per chunk of session ids, two aggregates: the sessions' fixed-size headers (id, visitor,
        # event count), then their events, in the same order. Chunks of a few hundred kilobytes
        # travel faster than one value of tens of megabytes.
        rows = _fetch_binary_rows(
            "SELECT string_agg(int8send(q.session_id::int8)"
            " || int8send(coalesce(q.visitor_id, -q.session_id)::int8)"
            " || int4send(q.event_count::int4), ''::bytea),"
            f" string_agg(q.events, ''::bytea) FROM ({sql}) q GROUP BY q.session_id >> {SEQUENCE_CHUNK_BITS}",
            params,
        )
        headers = b"".join(bytes(r[0]) for r in rows)
        events = b"".join(bytes(r[1]) for r in rows)
        header = np.frombuffer(headers, dtype=_SEQUENCE_HEADER)
        return _Closed(
            header["session"].astype(np.int64),
            header["visitor"].astype(np.int64),
            header["count"].astype(np.int64),
            unpack(events),
        )
    rows = list(qs.values_list("session_id", "visitor_id", "event_count", "events"))
    return _Closed(
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] if r[1] is not None else -r[0] for r in rows], dtype=np.int64),
        np.array([r[2] for r in rows], dtype=np.int64),
        unpack(b"".join(bytes(r[3]) for r in rows)),
    )


def _fetch_binary_rows(sql: str, params: Sequence[Any]) -> list[tuple]:
    """Rows from PostgreSQL in binary format: byte strings arrive as they are, not as hex text
    (three times fewer bytes to send and decode). Logged like any other query."""
    import psycopg  # PostgreSQL only

    with connection.cursor() as wrapper:
        cursor = psycopg.Cursor(connection.connection)
        debug = getattr(wrapper, "debug_sql", None)
        if debug is None:
            cursor.execute(sql, params, binary=True)
            return cursor.fetchall()
        with debug(sql, params):
            cursor.execute(sql, params, binary=True)
            return cursor.fetchall()


def _binary_values(qs, *fields: str) -> list[tuple]:
    """qs.values_list(*fields), on PostgreSQL fetched in binary format (byte strings as they are)."""
    qs = qs.values_list(*fields).order_by()
    if connection.vendor != "postgresql":
        return list(qs)
    return _fetch_binary_rows(*qs.query.sql_with_params())


def _closed_stream(closed: _Closed, scope: Scope, *, by: str, codes: np.ndarray, require: int | None = None) -> Stream:
    """The closed sessions' events in the range as a stream grouped by visitor or session.

    `codes` maps the positions of `closed.events` to codes; 0 drops the event. With `require`,
    only the sequences with an event of that code in the range are kept."""
    holder = np.repeat(np.arange(len(closed.counts)), closed.counts)  # each event's sequence
    at = np.flatnonzero(codes != 0)  # the events that count, then those in the range
    t = closed.events["t"][at].astype(np.int64)
    inside = (t >= epoch_us(scope.start)) & (t < epoch_us(scope.end))
    at, t = at[inside], t[inside]
    owner = holder[at]
    if require is not None:
        holds = np.zeros(len(closed.counts), dtype=bool)
        holds[owner[codes[at] == require]] = True
        keep = holds[owner]
        at, t, owner = at[keep], t[keep], owner[keep]
    group = (closed.visitors if by == "visitor" else closed.sessions)[owner]
    return Stream(group, t, closed.events["id"][at].astype(np.int64), codes[at])


def _closed_streams(
    parts: list[_Closed],
    scope: Scope,
    *,
    by: str,
    ids: np.ndarray,
    values: np.ndarray,
    require: int | None = None,
) -> list[Stream]:
    """_closed_stream of each part, with each event's code values[i] where its action is ids[i]."""
    return [
        _closed_stream(part, scope, by=by, codes=_action_codes(part.events["action"], ids, values), require=require)
        for part in parts
    ]


# Action ids below this are mapped to codes through a table indexed by id (one lookup per
# event); beyond it, by binary search among the wanted ids.
MAX_ACTION_TABLE = 1 << 20


def _action_codes(action: np.ndarray, ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per event, values[i] where its action is ids[i], else 0."""
    if not len(ids) or not len(action):
        return np.zeros(len(action), dtype=np.int64)
    top = max(int(ids.max()), int(action.max()))
    if top < MAX_ACTION_TABLE:
        table = np.zeros(top + 1, dtype=np.int64)
        table[ids] = values
        return table[action]
    order = np.argsort(ids)
    ids, values = ids[order], values[order]
    action = action.astype(np.int64)
    at = np.minimum(np.searchsorted(ids, action), len(ids) - 1)
    return np.where(ids[at] == action, values[at], 0)


class _EqualsAny(Func):
    """`column = ANY(array)` (PostgreSQL): one array parameter however many values, where `__in`
    sends, and has the server parse and plan, one parameter per value."""

    arg_joiner = " = ANY("
    template = "(%(expressions)s))"
    output_field = BooleanField()


def _in_values(qs, field: str, values: list[int]):
    if connection.vendor == "postgresql":
        return qs.filter(_EqualsAny(F(field), Value(values)))
    return qs.filter(**{f"{field}__in": values})


class _EpochMicroseconds(Func):
    """A timestamp as whole microseconds since the epoch, computed by PostgreSQL (exact: numeric)."""

    template = "(EXTRACT(EPOCH FROM %(expressions)s) * 1000000)::bigint"
    output_field = BigIntegerField()


def _open_rows(scope: Scope, closed_through: datetime | None, events: Q, *, by: str) -> list[tuple]:
    """Raw events in the range of the sessions without a sequence (started at or after the
    watermark) that match `events`: (group key, time in microseconds, event id, type, name, path).

    The group is the session, or the visitor: its Visitor id when it has one (so it meets its
    closed sessions), a key of its own otherwise, minus the session id without an anonymous id."""
    qs = event_queryset(start=scope.start, end=scope.end, neuron_ids=scope.neuron_ids, filters=scope.filters)
    qs = qs.filter(events)
    sessions: dict[int, tuple[int, str, int | None]] = {}
    if closed_through is not None:
        # The open sessions first (the (neuron, started_at) index), then their events (the session
        # index): joined in one statement, PostgreSQL walked every session instead.
        # Those started since the watermark without a sequence (analytics.services.sequences_build_ended
        # writes the sequences of sessions that ended before their hour closed).
        open_sessions = UserSession.objects.filter(scope.filters.session_q(), started_at__gte=closed_through).filter(
            ~Exists(SessionSequence.objects.filter(session_id=OuterRef("pk")))
        )
        if scope.neuron_ids is not None:
            open_sessions = open_sessions.filter(neuron_id__in=scope.neuron_ids)
        if by == "visitor":
            open_sessions = open_sessions.annotate(
                visitor_key=Subquery(
                    Visitor.objects.filter(neuron_id=OuterRef("neuron_id"), anonymous_id=OuterRef("anonymous_id"))
                    .order_by()
                    .values("pk")[:1]
                )
            )
            sessions = {
                pk: (neuron_id, anonymous_id, key)
                for pk, neuron_id, anonymous_id, key in open_sessions.values_list(
                    "pk", "neuron_id", "anonymous_id", "visitor_key"
                )
            }
        else:
            sessions = dict.fromkeys(open_sessions.values_list("pk", flat=True), (0, "", None))
        qs = _in_values(qs, "session_id", list(sessions))
    postgres = connection.vendor == "postgresql"
    names = ["session_id", "t_us" if postgres else "timestamp", "pk", "event_type", "event_name", "page_path"]
    if by == "visitor" and closed_through is None:
        names += ["session__neuron_id", "session__anonymous_id"]
    if postgres:
        qs = qs.annotate(t_us=_EpochMicroseconds("timestamp"))
    fresh: dict[tuple[int, str], int] = {}
    out = []
    for row in qs.values_list(*names):
        session_id = row[0]
        t = row[1] if postgres else epoch_us(row[1])
        key = session_id
        if by == "visitor":
            neuron_id, anonymous_id, known = sessions[session_id] if closed_through is not None else (*row[6:8], None)
            if not anonymous_id:
                key = -session_id  # no anonymous id: the session is its own visitor
            elif known is not None:
                key = known
            else:
                key = fresh.setdefault((neuron_id, anonymous_id), -(1 << 40) - len(fresh))
        out.append((key, t, *row[2:6]))
    return out


def _rows_stream(rows: list[tuple], code: Callable[[tuple], int]) -> Stream:
    """_open_rows' rows as a stream, each event's code given by `code(row)`."""
    return Stream(
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.int64),
        np.array([r[2] for r in rows], dtype=np.int64),
        np.array([code(r) for r in rows], dtype=np.int64),
    )


def funnel_report(*, scope: Scope, steps: Sequence[FunnelStep], window: timedelta) -> dict[str, Any]:
    """Visitors through ordered steps within `window` of their first step (events in range).

    Closed sessions are read from their packed sequences, the others from raw events;
    analytics.sequences.funnel_reach matches every visitor at once. What the closed days give
    (their sorted stream, each visitor's reach) is kept while their rows are unchanged
    (DAY_RESULT_CACHE); only the visitors of recent and open sessions are matched again."""
    any_step = Q(pk__in=[])
    for step in steps:
        any_step |= step.q()

    @functools.cache
    def mask(event_type: str, event_name: str, path: str) -> int:
        return sum(1 << i for i, s in enumerate(steps) if s.matches(event_type, event_name, path))

    window_us = int(window / timedelta(microseconds=1))
    with _one_snapshot():
        closed_through = _sequence_watermark()
        actions = Action.objects.filter(any_step).values_list("pk", "event_type", "event_name", "page_path")
        masks = {pk: mask(t, n, p) for pk, t, n, p in actions}
        # A session holding no step contributes nothing (the visitor's other sessions are read on their own).
        parts = _closed_sequences(scope, closed_through, actions=sorted(masks))
        ids = np.fromiter(masks, dtype=np.int64, count=len(masks))
        values = np.fromiter(masks.values(), dtype=np.int64, count=len(masks))

        def match_days() -> tuple[Stream, FunnelReach]:
            days = Stream.concat(_closed_streams(parts.load_days(), scope, by="visitor", ids=ids, values=values))
            days = days.sorted().frozen()
            return days, funnel_reach(days, len(steps), window_us)

        key = None
        if parts.versions is not None:
            terms = (scope.start, scope.end, scope.neuron_ids, scope.filters, tuple(steps), window_us)
            key = ("funnel", parts.versions, *terms, tuple(sorted(masks.items())))
        days, days_reach = DAY_RESULT_CACHE.get_or_compute(key, match_days, lambda v: v[0].nbytes + v[1].nbytes)
        recent = _closed_streams([parts.others], scope, by="visitor", ids=ids, values=values)
        rows = _open_rows(scope, closed_through, any_step, by="visitor")
        if rows:
            recent.append(_rows_stream(rows, lambda r: mask(r[3], r[4], r[5])))
    reach = funnel_reach_with(days, days_reach, Stream.concat(recent), len(steps), window_us)
    seconds = window.total_seconds()
    counts = funnel_counts(reach, len(steps))
    out_steps = []
    for i, (step, c) in enumerate(zip(steps, counts, strict=True)):
        prev = counts[i - 1].entrants if i else c.entrants
        first = counts[0].entrants
        out_steps.append(
            {
                "step": i + 1,
                "label": step.label,
                "entrants": c.entrants,
                "dropOff": (prev - c.entrants) if i else 0,
                "conversionFromStart": round(c.entrants / first, 6) if first else 0.0,
                "conversionFromPrevious": round(c.entrants / prev, 6) if prev else 0.0,
                "medianSecondsFromPrevious": c.median_seconds_from_previous,
            }
        )
    return {"period": scope.describe(), "windowSeconds": int(seconds), "unit": "visitor", "steps": out_steps}


def journeys_report(*, scope: Scope, page: str, direction: str, depth: int, top: int) -> dict[str, Any]:
    """Page paths after (or before) a page, per session, from page views in the range.

    Closed sessions are read from their packed sequences, the others from raw events;
    analytics.sequences builds every session's trail at once. The closed days' trails are kept
    while their rows are unchanged (DAY_RESULT_CACHE); only recent and open sessions are traced."""
    names: list[str] = []
    index: dict[str, int] = {}

    def path_index(path: str) -> int:
        if path not in index:
            index[path] = len(names)
            names.append(path)
        return index[path]

    with _one_snapshot():
        closed_through = _sequence_watermark()
        pairs = list(Action.objects.filter(event_type__in=PAGE_VIEW_TYPES).values_list("pk", "page_path"))
        # Only the sessions that viewed the page have a trail.
        parts = _closed_sequences(scope, closed_through, actions=sorted(pk for pk, path in pairs if path == page))

        def streams_of(closed: list[_Closed]) -> list[Stream]:
            ids = np.array([pk for pk, _ in pairs], dtype=np.int64)
            values = np.array([path_index(p) + 1 for _, p in pairs], dtype=np.int64)  # 0 drops
            # Only the sessions that viewed the page in the range have a trail.
            out = _closed_streams(closed, scope, by="session", ids=ids, values=values, require=index[page] + 1)
            for stream in out:
                stream.code = stream.code - 1
            return out

        def trace_days() -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
            path_index(page)
            sessions, trails = trace(streams_of(parts.load_days()))
            sessions.flags.writeable = trails.flags.writeable = False
            return tuple(names), sessions, trails

        def trace(streams: list[Stream]) -> tuple[np.ndarray, np.ndarray]:
            # Each sequence is one session's views in order, and the open sessions are others: every
            # session is contiguous and ordered, which is all session_trails needs (no global sort).
            return session_trails(Stream.concat(streams), page=index[page], direction=direction, depth=depth)

        key = None
        if parts.versions is not None:
            terms = (scope.start, scope.end, scope.neuron_ids, scope.filters, page, direction, depth)
            key = ("journeys", parts.versions, *terms)
        # Page indexes as the days' trails have them (a held entry's), the later pages after them.
        known, day_sessions, day_trails = DAY_RESULT_CACHE.get_or_compute(
            key, trace_days, lambda v: v[1].nbytes + v[2].nbytes + sum(len(n) for n in v[0])
        )
        for name in known:
            path_index(name)
        streams = streams_of([parts.others]) if len(parts.others.events) else []
        views = Q(event_type__in=PAGE_VIEW_TYPES)
        if closed_through is None:
            # Every session is open: only those that viewed the page. (With sequences, the open
            # sessions are few: all their views are read, and those without the page have no trail.)
            with_page = BehaviorEvent.objects.filter(
                event_type__in=PAGE_VIEW_TYPES, page_path=page, timestamp__gte=scope.start, timestamp__lt=scope.end
            ).values("session_id")
            views &= Q(session_id__in=with_page)
        rows = _open_rows(scope, closed_through, views, by="session")
        if rows:
            streams.append(_rows_stream(rows, lambda r: path_index(r[5])).sorted())
        sessions, trails = trace(streams)
    # Rows in session order, as one stream of every session gives them.
    order = np.argsort(np.concatenate([day_sessions, sessions]), kind="stable")
    trails = np.concatenate([day_trails, trails])[order]
    graph = journey_graph_from_trails(trails, names, page=page, direction=direction, top=top)
    return {"period": scope.describe(), "page": page, "direction": direction, "depth": depth, **graph}


def _period_index(moment: datetime, origin: date, period: str, tz: ZoneInfo) -> int:
    day = moment.astimezone(tz).date()
    if period == "day":
        return (day - origin).days
    return ((day - timedelta(days=day.weekday())) - origin).days // 7


def retention_report(*, scope: Scope, period: str, periods: int, now: datetime | None = None) -> dict[str, Any]:
    """Cohorts of visitors by the local day or week of their first session; the share
    seen again in each later period. Visitors first seen before the range are not
    in any cohort; later periods run past the range end, up to now."""
    now = now or timezone.now()
    origin = scope.start.astimezone(scope.tz).date()
    if period == "week":
        origin = origin - timedelta(days=origin.weekday())
    last_cohort = _period_index(scope.end - timedelta(microseconds=1), origin, period, scope.tz)
    n_cohorts = last_cohort + 1
    span = DAY if period == "day" else 7 * DAY
    horizon = min(_local_midnight(origin, scope.tz) + (n_cohorts + periods) * span + DAY, max(now, scope.end))
    counted = _retention_counts_sets(scope, origin=origin, period=period, horizon=horizon)
    if counted is None:
        f = scope.filters
        earlier = consented_sessions().filter(
            f.session_q(),
            neuron=OuterRef("neuron"),
            anonymous_id=OuterRef("anonymous_id"),
            started_at__lt=scope.start,
        )
        qs = session_queryset(start=scope.start, end=horizon, neuron_ids=scope.neuron_ids, filters=f).filter(
            ~Exists(earlier)
        )
        if connection.vendor == "postgresql" and n_cohorts + periods + 2 <= RETENTION_BIT_PERIODS:
            counted = _retention_counts_bits(qs, scope=scope, origin=origin, period=period)
        else:
            counted = _retention_counts_window(qs, scope=scope, origin=origin, period=period)
    table = [[0] * (periods + 1) for _ in range(n_cohorts)]
    for c, seen, n in counted:
        k = seen - c
        if 0 <= c < n_cohorts and 0 <= k <= periods:
            table[c][k] += n
    cohorts = []
    for c, row in enumerate(table):
        start_day = origin + (timedelta(days=c) if period == "day" else timedelta(weeks=c))
        size = row[0]
        cohorts.append(
            {
                "cohort": start_day.isoformat(),
                "visitors": size,
                "returning": [
                    {"period": k, "visitors": row[k], "share": _ratio(row[k], size)} for k in range(1, periods + 1)
                ],
            }
        )
    return {"period": scope.describe(), "cohortPeriod": period, "periods": periods, "cohorts": cohorts}


# Retention on PostgreSQL marks each visitor's periods as bits of one bigint when the cohorts and
# later periods fit in it; longer spans are counted by the window query.
RETENTION_BIT_PERIODS = 62


def _retention_counts_sets(
    scope: Scope, *, origin: date, period: str, horizon: datetime
) -> list[tuple[int, int, int]] | None:
    """(first period, period, visitors) from the hours' visitor sets (integer Visitor ids), the
    sessions since their watermark read raw; None where the sets cannot answer: two or three
    filters, or an hour that straddles two periods (zones off the whole hour).

    A visitor of an hour before the range (any set before it, or a raw session) is in no cohort,
    as the sessions queries' anti-join has it. Integers are grouped in numpy instead of
    PostgreSQL hashing every session's anonymous id."""
    f = scope.filters
    mark, _ = _visitors_watermark()
    if mark is None or not dimension_supports("total", f):
        return None
    sets_end = min(mark, horizon)
    if scope.start.minute or scope.start.second or scope.start.microsecond:
        return None
    sets = _visitor_sets(scope).filter(period_start__lt=sets_end)
    hour_period: dict[datetime, int] = {}
    before: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    seen: list[np.ndarray] = []
    for hour, blob in _binary_values(sets, "period_start", "ids"):
        visitors = np.frombuffer(blob, dtype=VISITOR_IDS_DTYPE)
        if hour < scope.start:
            before.append(visitors)
            continue
        p = hour_period.get(hour)
        if p is None:
            p = _period_index(hour, origin, period, scope.tz)
            if _period_index(hour + HOUR - timedelta(microseconds=1), origin, period, scope.tz) != p:
                return None
            hour_period[hour] = p
        ids.append(visitors)
        seen.append(np.full(len(visitors), p, dtype=np.int64))
    # The sessions since the watermark; visitors without a Visitor id yet get keys of their own (< 0).
    fresh: dict[tuple[int, str], int] = {}
    raw_ids: list[int] = []
    raw_seen: list[int] = []
    start_us = epoch_us(scope.start)
    for t, key, neuron_id, anonymous_id in _sessions_with_visitor_ids(scope, sets_end, horizon):
        if key is None:
            key = fresh.setdefault((neuron_id, anonymous_id), -1 - len(fresh))
        if t < start_us:
            before.append(np.array([key], dtype=np.int64))
            continue
        moment = EPOCH + timedelta(microseconds=t)
        raw_ids.append(key)
        raw_seen.append(_period_index(moment, origin, period, scope.tz))
    ids.append(np.array(raw_ids, dtype=np.int64))
    seen.append(np.array(raw_seen, dtype=np.int64))
    visitor = np.concatenate(ids).astype(np.int64)
    periods = np.concatenate(seen)
    if before:
        keep = ~np.isin(visitor, np.concatenate(before))
        visitor, periods = visitor[keep], periods[keep]
    if not len(visitor):
        return []
    # Distinct (visitor, period) pairs, each visitor's first; then visitors per (first, period).
    order = np.lexsort((periods, visitor))
    visitor, periods = visitor[order], periods[order]
    new_visitor = np.ones(len(visitor), dtype=bool)
    new_visitor[1:] = visitor[1:] != visitor[:-1]
    distinct = new_visitor.copy()
    distinct[1:] |= periods[1:] != periods[:-1]
    first = periods[new_visitor][np.cumsum(new_visitor) - 1]
    first, periods = first[distinct], periods[distinct]
    low = int(min(first.min(), periods.min()))
    width = int(periods.max()) - low + 1
    cells, counts = np.unique((first - low) * width + (periods - low), return_counts=True)
    return [(int(c // width) + low, int(c % width) + low, int(n)) for c, n in zip(cells, counts, strict=True)]


def _retention_counts_bits(qs, *, scope: Scope, origin: date, period: str) -> list[tuple[int, int, int]]:
    """(first period, period, visitors) for the visits in `qs`, period indexes from `origin`.

    One hash aggregate per visitor (their first period, and the set of their periods as bits),
    then one per distinct (first period, set): a few thousand rows. The window query sorts
    every visitor-period by visitor instead, which costs several times more at 100k sessions."""
    visits = qs.annotate(visit_day=TruncDate("started_at", tzinfo=scope.tz)).values(
        "neuron_id", "anonymous_id", "visit_day"
    )
    visits_sql, params = visits.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT g.first_period, g.periods, COUNT(*) FROM (SELECT MIN(v.i) AS first_period,"
            " BIT_OR(1::int8 << v.i) AS periods FROM (SELECT s.neuron_id, s.anonymous_id,"
            f" (s.visit_day - %s::date) / %s AS i FROM ({visits_sql}) s) v"
            " GROUP BY v.neuron_id, v.anonymous_id) g GROUP BY g.first_period, g.periods",
            [origin, 1 if period == "day" else 7, *params],
        )
        rows = cursor.fetchall()
    counted = []
    for first, bits, n in rows:
        while bits:
            low = bits & -bits
            counted.append((first, low.bit_length() - 1, n))
            bits ^= low
    return counted


def _retention_counts_window(qs, *, scope: Scope, origin: date, period: str) -> list[tuple[int, int, int]]:
    """(first period, period, visitors) by a window over the distinct visitor-periods: per visitor
    the distinct local days (or weeks) seen, the first of them by a window over the visitor; a few
    hundred rows come back instead of one per session."""
    trunc = TruncDate("started_at", tzinfo=scope.tz) if period == "day" else TruncWeek("started_at", tzinfo=scope.tz)
    visits_sql, params = (
        qs.annotate(visit_period=trunc).values("neuron_id", "anonymous_id", "visit_period").distinct().query
    ).sql_with_params()
    # The window sorts visits by visitor: byte order is enough to group them, and on PostgreSQL
    # cheaper than the database's collation.
    binary = ' COLLATE "C"' if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT w.first_period, w.visit_period, COUNT(*) FROM (SELECT v.visit_period,"
            f" MIN(v.visit_period) OVER (PARTITION BY v.neuron_id, v.anonymous_id{binary}) AS first_period"
            f" FROM ({visits_sql}) v) w GROUP BY w.first_period, w.visit_period",
            params,
        )
        counted = cursor.fetchall()

    def index(value: Any) -> int:
        day = value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
        if isinstance(day, datetime):
            day = day.date()
        return (day - origin).days // (1 if period == "day" else 7)

    return [(index(first), index(seen), n) for first, seen, n in counted]


def funnel_steps_from_strings(raw_steps: Sequence[str]) -> list[FunnelStep]:
    """`page:/pricing`, `event:click`, `event:click:signup` -> steps; bad ones raise a 400."""
    steps: list[FunnelStep] = []
    errors: dict[str, list[str]] = {}
    for i, raw in enumerate(raw_steps):
        kind, _, rest = raw.partition(":")
        if kind == "page" and rest.startswith("/"):
            steps.append(FunnelStep(kind="page", path=rest))
        elif kind == "event" and rest:
            event_type, _, name = rest.partition(":")
            steps.append(FunnelStep(kind="event", event_type=event_type, event_name=name))
        else:
            errors[f"step[{i}]"] = ["Use page:/path, event:type or event:type:name."]
    if errors:
        raise ValidationFailed("Invalid funnel steps; see errors.", errors=errors)
    return steps
