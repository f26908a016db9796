"""The aggregations behind every number, shared by the rollup jobs and the raw reads.

The rollup service runs these over closed periods grouped by UTC hour and by the
filter attributes; the selectors run the very same functions over the open
period with the filters applied. One definition of each metric, two callers, so
rollups and raw rows cannot drift apart.

Definitions (documented in the API too):
- a session counts when its visitor gave analytics consent; it belongs to the
  period in which it started;
- new session: no earlier session with the same anonymous id on that neuron;
- bounce: at most one page view and no interaction;
- converted session: it holds at least one conversion event (settings
  ANALYTICS_CONVERSION_EVENT_TYPES / ANALYTICS_CONVERSION_EVENT_NAMES);
- duration: last activity minus start;
- an event belongs to the period of its (skew-corrected) timestamp.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import (
    Case,
    CharField,
    Count,
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    Func,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Concat, TruncDay, TruncHour

from analytics.prepared import COMPILED, Param
from federation.models import Neuron
from sessions_app.event_input import PAGE_VIEW_TYPES
from sessions_app.models import BehaviorEvent, UserSession

FILTER_FIELDS = ("device_type", "country", "utm_source")
SESSION_METRICS = (
    "sessions",
    "new_sessions",
    "bounces",
    "converted_sessions",
    "page_view_sum",
    "duration_seconds",
    "engagement_sum",
)
EVENT_METRICS = ("events",)
# Separates event type from event name in the "event_name" dimension's value.
NAME_SEPARATOR = "\n"
ENGAGEMENT_BIN_WIDTH = 10
# Dimensions kept per hour (they feed metrics and trends). Every other dimension is a
# breakdown (pages, browsers, referrers, ...) and kept per day only.
HOURLY_DIMENSIONS = ("total", "event_type", "conversions")


def dimension_supports(dimension: str, filters: Filters) -> bool:
    """Whether rollup rows exist for these filters: none, or one of the three.

    Rows for every combination of two or three filter values would multiply the
    tables by the number of combinations seen (about 10x at a million events, as
    many rows as raw events), so such rare queries read raw rows instead.
    """
    return sum(getattr(filters, name) is not None for name in FILTER_FIELDS) <= 1


@dataclass(frozen=True)
class Filters:
    device_type: str | None = None
    country: str | None = None
    utm_source: str | None = None

    def session_q(self, prefix: str = "") -> Q:
        q = Q()
        for name in FILTER_FIELDS:
            value = getattr(self, name)
            if value is not None:
                q &= Q(**{f"{prefix}{name}": value})
        return q


def conversion_q(prefix: str = "") -> Q:
    """Which events are conversions: by type or by name, from settings."""
    q = Q(pk__in=[])
    types = list(settings.ANALYTICS_CONVERSION_EVENT_TYPES)
    names = list(settings.ANALYTICS_CONVERSION_EVENT_NAMES)
    if types:
        q |= Q(**{f"{prefix}event_type__in": types})
    if names:
        q |= Q(**{f"{prefix}event_name__in": names})
    return q


def is_conversion(event_type: str, event_name: str) -> bool:
    return event_type in settings.ANALYTICS_CONVERSION_EVENT_TYPES or (
        bool(event_name) and event_name in settings.ANALYTICS_CONVERSION_EVENT_NAMES
    )


def referrer_domain(referrer: str) -> str:
    """'https://www.news.example/a?b' -> 'news.example'; '' (direct) stays ''."""
    if not referrer:
        return ""
    host = urlsplit(referrer if "//" in referrer else "//" + referrer).hostname or ""
    host = host.lower()
    return host[4:] if host.startswith("www.") else host


def url_path(url: str) -> str:
    """The path of a landing page given as a URL or as a path."""
    if not url:
        return ""
    if url.startswith("/"):
        return url.split("?", 1)[0].split("#", 1)[0]
    return urlsplit(url).path or "/"


def engagement_bin(score: float) -> int:
    """Lower edge of the score's bin: 0, 10, ..., 90 (100 falls in the 90 bin)."""
    return min(int(score // ENGAGEMENT_BIN_WIDTH) * ENGAGEMENT_BIN_WIDTH, 100 - ENGAGEMENT_BIN_WIDTH)


class EngagementBin(Func):
    """The lower edge of an engagement score's bin as text: '0', '10', ..., '90' (100 falls in
    the 90 bin), as engagement_bin does. One node with constant SQL: the equivalent CASE of
    When/Q objects costs the ORM ~2 ms per query to resolve, compile and group by."""

    template = (
        "CASE "
        + " ".join(
            f"WHEN %(expressions)s < {edge + ENGAGEMENT_BIN_WIDTH}.0 THEN '{edge}'"
            for edge in range(0, 100 - ENGAGEMENT_BIN_WIDTH, ENGAGEMENT_BIN_WIDTH)
        )
        + f" ELSE '{100 - ENGAGEMENT_BIN_WIDTH}' END"
    )
    output_field = CharField()
    arity = 1


def _engagement_expression() -> EngagementBin:
    return EngagementBin(F("engagement_score"))


def _exit_page_expression() -> Subquery:
    last = BehaviorEvent.objects.filter(session=OuterRef("pk"), event_type__in=PAGE_VIEW_TYPES).order_by(
        "-timestamp", "-pk"
    )
    return Subquery(last.values("page_path")[:1], output_field=CharField())


CONSENT_PURPOSES = ("analytics", "personalization", "marketing", "fingerprinting")


def _consent_state_expression() -> Concat:
    """'1'/'0' per purpose of CONSENT_PURPOSES, e.g. '1100': analytics and personalization granted."""
    flags = [
        Case(When(**{f"consent__{p}": True}, then=Value("1")), default=Value("0"), output_field=CharField())
        for p in CONSENT_PURPOSES
    ]
    return Concat(*flags, output_field=CharField())


# Dimensions counted over every session, with or without analytics consent: a count per
# consent state is all they record.
ALL_SESSIONS_DIMENSIONS = ("consent_state",)

# name -> (SQL expression of the value, Python mapping applied after grouping or None)
SESSION_DIMENSIONS: dict[str, tuple[Callable[[], Any], Callable[[Any], str] | None]] = {
    "total": (lambda: Value("", output_field=CharField()), None),
    "device_type": (lambda: F("device_type"), None),
    "browser": (lambda: F("browser"), None),
    "os": (lambda: F("os"), None),
    "country": (lambda: F("country"), None),
    "referrer": (lambda: F("referrer"), referrer_domain),
    "utm_source": (lambda: F("utm_source"), None),
    "utm_medium": (lambda: F("utm_medium"), None),
    "utm_campaign": (lambda: F("utm_campaign"), None),
    "entry_page": (lambda: F("landing_page"), url_path),
    "exit_page": (_exit_page_expression, lambda v: v or ""),
    "engagement": (_engagement_expression, None),
    "consent_state": (_consent_state_expression, None),
}

EVENT_DIMENSIONS: dict[str, tuple[Callable[[], Any], Callable[[], Q]]] = {
    "event_type": (lambda: F("event_type"), Q),
    "event_name": (
        lambda: Concat(F("event_type"), Value(NAME_SEPARATOR), F("event_name"), output_field=CharField()),
        Q,
    ),
    "page": (lambda: F("page_path"), lambda: Q(event_type__in=PAGE_VIEW_TYPES)),
    "conversions": (lambda: Value("", output_field=CharField()), conversion_q),
}


def all_neuron_ids() -> tuple[int, ...]:
    """Every site's id. Queries over all sites still name them, so PostgreSQL can use the
    (neuron, time) indexes of sessions and events instead of scanning whole tables."""
    compiled = COMPILED.get_or_build(("neuron ids",), lambda: Neuron.objects.order_by("pk").values("pk"))
    return tuple(row["pk"] for row in compiled.rows())


def consented_sessions() -> QuerySet[UserSession]:
    return UserSession.objects.filter(consent__analytics=True)


def session_queryset(
    *,
    start: datetime,
    end: datetime,
    neuron_ids: Iterable[int] | None,
    filters: Filters,
    consented_only: bool = True,
) -> QuerySet[UserSession]:
    base = consented_sessions() if consented_only else UserSession.objects.all()
    qs = base.filter(filters.session_q(), started_at__gte=start, started_at__lt=end)
    if neuron_ids is not None:
        qs = qs.filter(neuron_id__in=list(neuron_ids))
    return qs


def event_queryset(
    *, start: datetime, end: datetime, neuron_ids: Iterable[int] | None, filters: Filters
) -> QuerySet[BehaviorEvent]:
    qs = BehaviorEvent.objects.filter(filters.session_q("session__"), timestamp__gte=start, timestamp__lt=end)
    if neuron_ids is not None:
        qs = qs.filter(neuron_id__in=list(neuron_ids))
    return qs


def _seconds(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value) / 1_000_000  # SQLite may hand back a duration sum as microseconds


def _trunc(field: str, tz: ZoneInfo, period: str) -> Any:
    return (TruncHour if period == "hour" else TruncDay)(field, tzinfo=tz)


def _group_fields(*, by_hour: bool, by_filters: bool, by_neuron: bool) -> list[str]:
    fields = ["value"]
    if by_hour:
        fields.append("hour")
    if by_filters:
        fields += list(FILTER_FIELDS)
    if by_neuron:
        fields.append("neuron_id")
    return fields


def _remap(rows: list[dict[str, Any]], post: Callable[[Any], str] | None, metrics: tuple[str, ...]) -> list[dict]:
    """Apply a Python value mapping (domains, paths) and add up rows that now share a key."""
    if post is None:
        for row in rows:
            row["value"] = row["value"] if row["value"] is not None else ""
        return rows
    merged: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        row["value"] = post(row["value"] or "")
        key = tuple((k, v) for k, v in row.items() if k not in metrics)
        if key in merged:
            for m in metrics:
                merged[key][m] += row[m]
        else:
            merged[key] = row
    return list(merged.values())


def _new_sessions() -> Count:
    earlier = UserSession.objects.filter(
        neuron=OuterRef("neuron"), anonymous_id=OuterRef("anonymous_id"), started_at__lt=OuterRef("started_at")
    )
    return Count("pk", filter=~Exists(earlier))


def _converted_sessions() -> Count:
    return Count("pk", filter=Exists(BehaviorEvent.objects.filter(conversion_q(), session=OuterRef("pk"))))


# metric -> its aggregate over sessions, built only when read (the subqueries cost the ORM
# more to build than a small open period costs the database).
SESSION_AGGREGATES: dict[str, Callable[[], Any]] = {
    "sessions": lambda: Count("pk"),
    "new_sessions": _new_sessions,
    "bounces": lambda: Count("pk", filter=Q(page_view_count__lte=1, interaction_count=0)),
    "converted_sessions": _converted_sessions,
    "page_view_sum": lambda: Sum("page_view_count"),
    "duration_seconds": lambda: Sum(
        ExpressionWrapper(F("last_activity_at") - F("started_at"), output_field=DurationField())
    ),
    "engagement_sum": lambda: Sum("engagement_score"),
}


def session_aggregate(
    *,
    queryset: QuerySet[UserSession],
    dimension: str,
    hour_tz: ZoneInfo | None,
    by_filters: bool = False,
    by_neuron: bool = False,
    period: str = "hour",
) -> list[dict[str, Any]]:
    """Session counts per dimension value (and per local hour, or day, when hour_tz is given)."""
    return session_aggregate_many(
        queryset=queryset,
        dimensions=[dimension],
        hour_tz=hour_tz,
        by_filters=by_filters,
        by_neuron=by_neuron,
        period=period,
    )[dimension]


def session_aggregate_many(
    *,
    queryset: QuerySet[UserSession],
    dimensions: Sequence[str],
    hour_tz: ZoneInfo | None,
    by_filters: bool = False,
    by_neuron: bool = False,
    period: str = "hour",
    metrics: Sequence[str] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """session_aggregate for several dimensions in one query.

    The sessions are grouped by every dimension's value at once (the combinations
    seen are few: a device type has few browsers), and each dimension's counts are
    the sums over the groups sharing its value: the sessions are read, and the
    new-visitor and conversion subqueries run, once instead of once per dimension.
    `metrics` narrows the counts to those the caller reads (sessions always): a
    report of session shares runs neither subquery.
    """
    grouped, names, keys, wanted = _session_grouped(
        queryset,
        dimensions,
        hour_tz=hour_tz,
        by_filters=by_filters,
        by_neuron=by_neuron,
        period=period,
        metrics=metrics,
    )
    return _session_fold(list(grouped), names, keys, wanted)


def _session_grouped(
    queryset: QuerySet[UserSession],
    dimensions: Sequence[str],
    *,
    hour_tz: ZoneInfo | None,
    by_filters: bool = False,
    by_neuron: bool = False,
    period: str = "hour",
    metrics: Sequence[str] | None = None,
) -> tuple[QuerySet, dict[str, str], list[str], tuple[str, ...]]:
    """The grouped .values() queryset of session_aggregate_many, its value columns, its other
    group keys and its metrics."""
    names, wanted = _session_columns(dimensions, metrics)
    annotations: dict[str, Any] = {names[d]: SESSION_DIMENSIONS[d][0]() for d in dimensions}
    if hour_tz is not None:
        annotations["hour"] = _trunc("started_at", hour_tz, period)
    keys = _group_fields(by_hour=hour_tz is not None, by_filters=by_filters, by_neuron=by_neuron)[1:]
    grouped = (
        queryset.annotate(**annotations)
        .values(*names.values(), *keys)
        .annotate(**{m: SESSION_AGGREGATES[m]() for m in wanted})
        .order_by()
    )
    return grouped, names, keys, wanted


def _session_fold(
    rows: list[dict[str, Any]], names: dict[str, str], keys: list[str], wanted: tuple[str, ...]
) -> dict[str, list[dict[str, Any]]]:
    """Rows grouped by every dimension's value at once -> each dimension's counts."""
    for row in rows:
        if "duration_seconds" in row:
            row["duration_seconds"] = _seconds(row["duration_seconds"])
        if "page_view_sum" in row:
            row["page_view_sum"] = row["page_view_sum"] or 0
        if "engagement_sum" in row:
            row["engagement_sum"] = float(row["engagement_sum"] or 0.0)
    out: dict[str, list[dict[str, Any]]] = {}
    for dimension, name in names.items():
        folded: dict[tuple, dict[str, Any]] = {}
        for row in rows:
            key = (row[name], *(row[k] for k in keys))
            cell = folded.get(key)
            if cell is None:
                folded[key] = {"value": row[name], **{k: row[k] for k in keys}, **{m: row[m] for m in wanted}}
            else:
                for m in wanted:
                    cell[m] += row[m]
        out[dimension] = _remap(list(folded.values()), SESSION_DIMENSIONS[dimension][1], wanted)
    return out


def session_aggregate_range(
    *,
    start: datetime,
    end: datetime,
    neuron_ids: tuple[int, ...] | None,
    filters: Filters,
    consented_only: bool,
    dimensions: Sequence[str],
    metrics: Sequence[str] | None,
) -> dict[str, list[dict[str, Any]]]:
    """session_aggregate_many over the sessions that started in [start, end), not by hour: the
    query is compiled once per shape (analytics.prepared) and run with this range."""

    def build() -> QuerySet:
        moment = DateTimeField()
        queryset = session_queryset(
            start=Param("start", moment),
            end=Param("end", moment),
            neuron_ids=neuron_ids,
            filters=filters,
            consented_only=consented_only,
        )
        return _session_grouped(queryset, dimensions, hour_tz=None, metrics=metrics)[0]

    shape = (
        "sessions",
        tuple(dimensions),
        tuple(metrics) if metrics is not None else None,
        neuron_ids,
        filters,
        consented_only,
        *_conversion_settings(),
    )
    rows = COMPILED.get_or_build(shape, build).rows(start=start, end=end)
    names, wanted = _session_columns(dimensions, metrics)
    return _session_fold(rows, names, [], wanted)


def _session_columns(
    dimensions: Sequence[str], metrics: Sequence[str] | None
) -> tuple[dict[str, str], tuple[str, ...]]:
    """Each dimension's value column, and the metrics counted (sessions always)."""
    wanted = tuple(m for m in SESSION_METRICS if metrics is None or m in metrics or m == "sessions")
    return {dimension: f"value_{i}" for i, dimension in enumerate(dimensions)}, wanted


def event_aggregate(
    *,
    queryset: QuerySet[BehaviorEvent],
    dimension: str,
    hour_tz: ZoneInfo | None,
    by_filters: bool = False,
    by_neuron: bool = False,
    period: str = "hour",
) -> list[dict[str, Any]]:
    """Event counts per dimension value (and per local hour, or day, when hour_tz is given)."""
    grouped = _event_grouped(
        queryset, dimension, hour_tz=hour_tz, by_filters=by_filters, by_neuron=by_neuron, period=period
    )
    return _remap(list(grouped), None, EVENT_METRICS)


def _event_grouped(
    queryset: QuerySet[BehaviorEvent],
    dimension: str,
    *,
    hour_tz: ZoneInfo | None,
    by_filters: bool = False,
    by_neuron: bool = False,
    period: str = "hour",
) -> QuerySet:
    """The grouped .values() queryset of event_aggregate."""
    expression, restrict = EVENT_DIMENSIONS[dimension]
    annotations: dict[str, Any] = {"value": expression()}
    if hour_tz is not None:
        annotations["hour"] = _trunc("timestamp", hour_tz, period)
    if by_filters:
        annotations.update({name: F(f"session__{name}") for name in FILTER_FIELDS})
    fields = _group_fields(by_hour=hour_tz is not None, by_filters=by_filters, by_neuron=by_neuron)
    return queryset.filter(restrict()).annotate(**annotations).values(*fields).annotate(events=Count("pk")).order_by()


def event_aggregate_range(
    *, start: datetime, end: datetime, neuron_ids: tuple[int, ...] | None, filters: Filters, dimension: str
) -> list[dict[str, Any]]:
    """event_aggregate over the events in [start, end), not by hour, compiled once per shape."""

    def build() -> QuerySet:
        moment = DateTimeField()
        queryset = event_queryset(
            start=Param("start", moment), end=Param("end", moment), neuron_ids=neuron_ids, filters=filters
        )
        return _event_grouped(queryset, dimension, hour_tz=None)

    shape = ("events", dimension, neuron_ids, filters, *_conversion_settings())
    return _remap(COMPILED.get_or_build(shape, build).rows(start=start, end=end), None, EVENT_METRICS)


def _conversion_settings() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What conversions are, baked into compiled SQL: a changed setting is a new shape."""
    return tuple(settings.ANALYTICS_CONVERSION_EVENT_TYPES), tuple(settings.ANALYTICS_CONVERSION_EVENT_NAMES)


def is_session_dimension(dimension: str) -> bool:
    return dimension in SESSION_DIMENSIONS


def metrics_of(dimension: str) -> tuple[str, ...]:
    return SESSION_METRICS if is_session_dimension(dimension) else EVENT_METRICS
