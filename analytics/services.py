"""Writes for analytics: building the hourly and daily rollups.

Every job here is idempotent: a period is rebuilt by deleting its rows and
inserting them again inside one transaction, so running a job twice, or two
workers at once, leaves the same rows. A period is *closed* once nothing that
started in it can still change: every session that started in it has ended and is
past the events grace period (rollup_closed_target); at the latest
ANALYTICS_ROLLUP_SETTLE after the hour ends, the absolute lifetime and the grace
period. Reads use rollups for closed periods and raw rows for the rest.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, F, Min, OuterRef, Q, QuerySet
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from analytics.aggregation import (
    ALL_SESSIONS_DIMENSIONS,
    EVENT_DIMENSIONS,
    FILTER_FIELDS,
    HOURLY_DIMENSIONS,
    SESSION_DIMENSIONS,
    Filters,
    all_neuron_ids,
    consented_sessions,
    event_aggregate,
    event_queryset,
    metrics_of,
    session_aggregate,
    session_queryset,
)
from analytics.models import (
    ALL,
    Action,
    DailyRollup,
    Granularity,
    HourlyRollup,
    RollupBase,
    RollupPeriod,
    RollupWatermark,
    SequenceDay,
    SessionSequence,
    Visitor,
    VisitorRollup,
)
from analytics.sequences import DAY_HEADER_DTYPE, VISITOR_IDS_DTYPE, epoch_us, pack
from sessions_app.models import BehaviorEvent, UserSession

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Which filter attributes keep their value (True) or become ALL (False) in a rollup row:
# all ALL, or one of them kept (see aggregation.dimension_supports).
_SUBSETS = [keep for keep in itertools.product((False, True), repeat=len(FILTER_FIELDS)) if sum(keep) <= 1]


def floor_hour(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


def floor_day(moment: datetime) -> datetime:
    return floor_hour(moment).replace(hour=0)


def rollup_closed_target(*, now: datetime) -> datetime:
    """The hour boundary before which every hour is closed at `now`.

    Every session that started before it has ended and is past the events grace period
    (ingestion refuses its events; heartbeats, updates and restores need a live session), so
    nothing in those hours can change but late backdated events and erasures, which the
    reconcile job recounts. That is the hour of the oldest session not yet settled, and never
    before ANALYTICS_ROLLUP_SETTLE ago (no session lives longer, should one never be ended)."""
    fixed = floor_hour(now - settings.ANALYTICS_ROLLUP_SETTLE)
    cut = now - settings.EVENTS_GRACE_PERIOD - SEQUENCE_EARLY_MARGIN
    recent = UserSession.objects.filter(started_at__gte=fixed, started_at__lt=cut)
    oldest = [
        recent.filter(ended_at__isnull=True).aggregate(m=Min("started_at"))["m"],
        recent.filter(ended_at__gte=cut).aggregate(m=Min("started_at"))["m"],
    ]
    return max(fixed, floor_hour(min([cut, *(m for m in oldest if m is not None)])))


def _fold(
    rows: list[dict[str, Any]], metrics: tuple[str, ...], subsets: list[tuple[bool, ...]]
) -> dict[tuple, dict[str, float]]:
    """Detailed rows (per filter values) -> rows for each kept combination of values and ALL."""
    out: dict[tuple, dict[str, float]] = {}
    for row in rows:
        for keep in subsets:
            filt = tuple(row[name] if k else ALL for name, k in zip(FILTER_FIELDS, keep, strict=True))
            key = (row["neuron_id"], row["hour"], *filt, row["value"])
            bucket = out.get(key)
            if bucket is None:
                out[key] = {m: row[m] for m in metrics}
            else:
                for m in metrics:
                    bucket[m] += row[m]
    return out


def _rollup_rows(
    *, model: type[RollupBase], start: datetime, end: datetime, period: str, every_dimension: bool
) -> tuple[list[RollupBase], dict[datetime, list[int]]]:
    """Rollup rows for the periods in [start, end), plus each period's source row counts."""
    floor = floor_hour if period == "hour" else floor_day
    dimensions = (*SESSION_DIMENSIONS, *EVENT_DIMENSIONS) if every_dimension else HOURLY_DIMENSIONS
    rows: list[RollupBase] = []
    sources: dict[datetime, list[int]] = defaultdict(lambda: [0, 0])
    neurons = all_neuron_ids()
    sessions = session_queryset(start=start, end=end, neuron_ids=neurons, filters=Filters())
    every_session = session_queryset(start=start, end=end, neuron_ids=neurons, filters=Filters(), consented_only=False)
    events = event_queryset(start=start, end=end, neuron_ids=neurons, filters=Filters())
    for dimension in dimensions:
        if dimension in ALL_SESSIONS_DIMENSIONS:
            aggregate, queryset = session_aggregate, every_session
        elif dimension in SESSION_DIMENSIONS:
            aggregate, queryset = session_aggregate, sessions
        else:
            aggregate, queryset = event_aggregate, events
        detail = aggregate(
            queryset=queryset, dimension=dimension, hour_tz=UTC, by_filters=True, by_neuron=True, period=period
        )
        if dimension == "total":
            for row in detail:
                sources[floor(row["hour"])][0] += row["sessions"]
        elif dimension == "event_type":
            for row in detail:
                sources[floor(row["hour"])][1] += row["events"]
        for (neuron_id, moment, device, country, utm, value), counts in _fold(
            detail, metrics_of(dimension), _SUBSETS
        ).items():
            rows.append(
                model(
                    neuron_id=neuron_id,
                    period_start=floor(moment),
                    device_type=device,
                    country=country,
                    utm_source=utm,
                    dimension=dimension,
                    value=value[:1024],
                    **counts,
                )
            )
    return rows, sources


def _replace_periods(
    *,
    model: type[RollupBase],
    granularity: str,
    start: datetime,
    end: datetime,
    step: timedelta,
    now: datetime,
    every_dimension: bool = True,
) -> int:
    rows, sources = _rollup_rows(model=model, start=start, end=end, period=granularity, every_dimension=every_dimension)
    model.objects.filter(period_start__gte=start, period_start__lt=end).delete()
    model.objects.bulk_create(rows, batch_size=2000)
    RollupPeriod.objects.filter(granularity=granularity, period_start__gte=start, period_start__lt=end).delete()
    count = int((end - start) / step)
    RollupPeriod.objects.bulk_create(
        [
            RollupPeriod(
                granularity=granularity,
                period_start=moment,
                source_sessions=sources[moment][0] if moment in sources else 0,
                source_events=sources[moment][1] if moment in sources else 0,
                computed_at=now,
            )
            for moment in (start + i * step for i in range(count))
        ],
        batch_size=2000,
    )
    return len(rows)


def _rollups_changed(*granularities: str) -> None:
    """Count a change of the rollup rows or visitor sets of these granularities (selectors' cached
    sums and unions key on it). Call it in the transaction that changes them, before it does: the
    watermark rows are locked hours, days, visitor sets, the order in which rollup_advance locks
    them, so concurrent jobs cannot deadlock."""
    for granularity in (Granularity.HOUR, Granularity.DAY, Granularity.VISITORS):
        if granularity in granularities:
            RollupWatermark.objects.filter(granularity=granularity).update(generation=F("generation") + 1)


@transaction.atomic
def rollup_build_hours(
    *, start: datetime, end: datetime, now: datetime | None = None, breakdowns_from: datetime | None = None
) -> int:
    """(Re)build the hourly rollups of every hour in [start, end). Returns the rows written.

    Hours hold the metrics dimensions (HOURLY_DIMENSIONS); hours not yet covered by a
    daily rollup, from `breakdowns_from` (by default the daily watermark), hold every
    dimension, so breakdowns read raw rows only for the open hours. Building a day
    drops its hours' breakdown rows again."""
    start, end = floor_hour(start), floor_hour(end)
    if end <= start:
        return 0
    if breakdowns_from is None:
        daily = RollupWatermark.objects.filter(granularity=Granularity.DAY).first()
        breakdowns_from = daily.closed_through if daily is not None else start
    cut = min(max(floor_hour(breakdowns_from), start), end)
    _rollups_changed(Granularity.HOUR)
    written = 0
    for a, b, every in ((start, cut, False), (cut, end, True)):
        if a < b:
            written += _replace_periods(
                model=HourlyRollup,
                granularity=Granularity.HOUR,
                start=a,
                end=b,
                step=HOUR,
                now=now or timezone.now(),
                every_dimension=every,
            )
    return written


@transaction.atomic
def rollup_build_days(*, start: datetime, end: datetime, now: datetime | None = None) -> int:
    """(Re)build the daily rollups of every UTC day in [start, end), every dimension."""
    start, end = floor_day(start), floor_day(end)
    if end <= start:
        return 0
    _rollups_changed(Granularity.HOUR, Granularity.DAY)
    written = _replace_periods(
        model=DailyRollup, granularity=Granularity.DAY, start=start, end=end, step=DAY, now=now or timezone.now()
    )
    # These days now answer breakdowns: their hours keep the metrics dimensions only.
    HourlyRollup.objects.filter(period_start__gte=start, period_start__lt=end).exclude(
        dimension__in=HOURLY_DIMENSIONS
    ).delete()
    return written


def _earliest_data() -> datetime | None:
    first_session = consented_sessions().aggregate(m=Min("started_at"))["m"]
    first_event = BehaviorEvent.objects.aggregate(m=Min("timestamp"))["m"]
    candidates = [m for m in (first_session, first_event) if m is not None]
    return min(candidates) if candidates else None


def _watermark(granularity: str) -> RollupWatermark | None:
    return RollupWatermark.objects.select_for_update().filter(granularity=granularity).first()


def _set_watermark(granularity: str, value: datetime) -> None:
    RollupWatermark.objects.update_or_create(granularity=granularity, defaults={"closed_through": value})


@transaction.atomic
def rollup_advance(*, now: datetime | None = None, chunk: timedelta = DAY) -> dict[str, int]:
    """Roll up every hour and day that closed since the last run, and move the watermarks.

    The watermark rows are locked for the whole run, so two concurrent runs
    serialise instead of building the same periods twice.
    """
    now = now or timezone.now()
    target = rollup_closed_target(now=now)
    hourly = _watermark(Granularity.HOUR)
    built_hours = 0
    if hourly is None:
        earliest = _earliest_data()
        start = floor_hour(earliest) if earliest is not None and earliest < target else target
    else:
        start = hourly.closed_through
    cursor = start
    # Days up to here get their daily rollups in this run: their hours need no breakdowns.
    breakdowns_from = floor_day(max(target, start))
    while cursor < target:
        step_end = min(cursor + chunk, target)
        rollup_build_hours(start=cursor, end=step_end, now=now, breakdowns_from=breakdowns_from)
        built_hours += int((step_end - cursor) / HOUR)
        cursor = step_end
    if hourly is None or target > hourly.closed_through:
        _set_watermark(Granularity.HOUR, max(target, start))
    hourly_through = max(target, start)

    daily = _watermark(Granularity.DAY)
    day_target = floor_day(hourly_through)
    day_start = daily.closed_through if daily is not None else floor_day(start)
    built_days = 0
    cursor = day_start
    while cursor < day_target:
        step_end = min(cursor + 7 * DAY, day_target)
        rollup_build_days(start=cursor, end=step_end, now=now)
        built_days += int((step_end - cursor) / DAY)
        cursor = step_end
    if daily is None or day_target > daily.closed_through:
        _set_watermark(Granularity.DAY, max(day_target, day_start))
    visitor_sets_advance(through=hourly_through, chunk=chunk)
    sequences_advance(through=hourly_through, chunk=chunk)
    sequence_days_advance()
    return {"hours": built_hours, "days": built_days}


def rollup_reconcile(*, now: datetime | None = None, days: int | None = None) -> dict[str, int]:
    """Rebuild closed periods whose raw rows changed after they were rolled up.

    Late events (a client's offline queue) and erasures change rows of closed
    hours. Each closed hour of the last `days` days is recounted (sessions and
    events, two grouped index scans) and compared with the counts it was built
    from; mismatched hours are rebuilt, then the days that hold them.
    """
    now = now or timezone.now()
    days = settings.ANALYTICS_ROLLUP_RECHECK_DAYS if days is None else days
    mark = RollupWatermark.objects.filter(granularity=Granularity.HOUR).first()
    if mark is None:
        return {"hours": 0, "days": 0}
    end = mark.closed_through
    start = floor_day(end - timedelta(days=days))
    recorded = {
        p: (s, e)
        for p, s, e in RollupPeriod.objects.filter(
            granularity=Granularity.HOUR, period_start__gte=start, period_start__lt=end
        ).values_list("period_start", "source_sessions", "source_events")
    }
    actual: dict[datetime, list[int]] = defaultdict(lambda: [0, 0])
    session_counts = (
        consented_sessions()
        .filter(started_at__gte=start, started_at__lt=end)
        .annotate(hour=TruncHour("started_at", tzinfo=UTC))
        .values("hour")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in session_counts:
        actual[floor_hour(row["hour"])][0] = row["n"]
    event_counts = (
        BehaviorEvent.objects.filter(timestamp__gte=start, timestamp__lt=end)
        .annotate(hour=TruncHour("timestamp", tzinfo=UTC))
        .values("hour")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in event_counts:
        actual[floor_hour(row["hour"])][1] = row["n"]
    stale = sorted(
        hour
        for hour in set(actual) | set(recorded)
        if start <= hour < end and tuple(actual.get(hour, [0, 0])) != recorded.get(hour, (0, 0))
    )
    for hour in stale:
        rollup_build_hours(start=hour, end=hour + HOUR, now=now)
    visitor_sets_rebuild_hours(stale)
    sequences_rebuild_hours(stale)
    stale_days = sorted({floor_day(h) for h in stale})
    daily = RollupWatermark.objects.filter(granularity=Granularity.DAY).first()
    rebuilt_days = 0
    for day in stale_days:
        if daily is not None and day + DAY <= daily.closed_through:
            rollup_build_days(start=day, end=day + DAY, now=now)
            rebuilt_days += 1
    return {"hours": len(stale), "days": rebuilt_days}


# ---------------------------------------------------------------------------
# Visitor sets: each closed hour's distinct visitors, for exact multi-day unique visitors
# ---------------------------------------------------------------------------


@transaction.atomic
def visitor_sets_build(*, start: datetime, end: datetime) -> int:
    """(Re)build the visitor sets of every hour in [start, end). Returns the sets written.

    One set per neuron, hour and filter combination (all ALL, or one filter value kept,
    as in the rollups): the sorted distinct Visitor ids of the consented sessions that
    started in the hour. Visitors get their integer id here if they have none yet."""
    start, end = floor_hour(start), floor_hour(end)
    if end <= start:
        return 0
    _rollups_changed(Granularity.VISITORS)
    rows = list(
        session_queryset(start=start, end=end, neuron_ids=all_neuron_ids(), filters=Filters()).values_list(
            "neuron_id", "anonymous_id", "started_at", *FILTER_FIELDS
        )
    )
    last_seen: dict[tuple[int, str], datetime] = {}
    for neuron_id, anonymous_id, started_at, *_ in rows:
        key = (neuron_id, anonymous_id)
        last_seen[key] = max(last_seen.get(key, started_at), started_at)
    visitors = visitors_ids(last_seen)
    sets: dict[tuple, set[int]] = defaultdict(set)
    for neuron_id, anonymous_id, started_at, *values in rows:
        visitor = visitors[(neuron_id, anonymous_id)]
        hour = floor_hour(started_at)
        for keep in _SUBSETS:
            sets[(neuron_id, hour, *(v if k else ALL for v, k in zip(values, keep, strict=True)))].add(visitor)
    VisitorRollup.objects.filter(period_start__gte=start, period_start__lt=end).delete()
    VisitorRollup.objects.bulk_create(
        [
            VisitorRollup(
                neuron_id=neuron_id,
                period_start=hour,
                device_type=device_type,
                country=country,
                utm_source=utm_source,
                visitors=len(ids),
                ids=np.array(sorted(ids), dtype=VISITOR_IDS_DTYPE).tobytes(),
            )
            for (neuron_id, hour, device_type, country, utm_source), ids in sets.items()
        ],
        batch_size=1000,
    )
    return len(sets)


@transaction.atomic
def _advance(
    granularity: str,
    sessions: QuerySet[UserSession],
    build: Callable[..., int],
    *,
    through: datetime,
    chunk: timedelta,
) -> int:
    """Run `build(start=, end=)` over the hours from `granularity`'s watermark (first time: from the
    hour of the first of `sessions`) to `through`, a chunk at a time; move the watermark."""
    mark = _watermark(granularity)
    if mark is not None:
        start = mark.closed_through
    else:
        first = sessions.filter(started_at__lt=through).aggregate(m=Min("started_at"))["m"]
        start = floor_hour(first) if first is not None else through
    written = 0
    cursor = start
    while cursor < through:
        step_end = min(cursor + chunk, through)
        written += build(start=cursor, end=step_end)
        cursor = step_end
    if mark is None or through > mark.closed_through:
        _set_watermark(granularity, max(through, start))
    return written


def visitor_sets_advance(*, through: datetime, chunk: timedelta = DAY) -> int:
    """Build the visitor sets of the closed hours before `through` that have none yet; move the watermark."""
    return _advance(Granularity.VISITORS, consented_sessions(), visitor_sets_build, through=through, chunk=chunk)


def visitor_sets_rebuild_hours(hours: Iterable[datetime]) -> int:
    """Rebuild the visitor sets of these closed hours (their sessions changed)."""
    mark = RollupWatermark.objects.filter(granularity=Granularity.VISITORS).first()
    if mark is None:
        return 0
    return sum(visitor_sets_build(start=h, end=h + HOUR) for h in hours if h < mark.closed_through)


# ---------------------------------------------------------------------------
# Session sequences: each closed session's events, packed, for funnels and journeys
# ---------------------------------------------------------------------------


def _digest(event_type: str, event_name: str, page_path: str) -> str:
    return hashlib.sha256(f"{event_type}\0{event_name}\0{page_path}".encode()).hexdigest()


def actions_ids(triples: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], int]:
    """The Action id of each (event type, event name, page path), creating the missing ones."""
    wanted = {_digest(*t): t for t in set(triples)}
    found: dict[str, int] = {}
    keys = list(wanted)
    for i in range(0, len(keys), 500):
        found.update(Action.objects.filter(digest__in=keys[i : i + 500]).values_list("digest", "pk"))
    missing = [d for d in wanted if d not in found]
    if missing:
        Action.objects.bulk_create(
            [
                Action(event_type=wanted[d][0], event_name=wanted[d][1], page_path=wanted[d][2], digest=d)
                for d in missing
            ],
            ignore_conflicts=True,
            batch_size=500,
        )
        for i in range(0, len(missing), 500):
            found.update(Action.objects.filter(digest__in=missing[i : i + 500]).values_list("digest", "pk"))
    return {t: found[d] for d, t in wanted.items()}


def visitors_ids(last_seen: dict[tuple[int, str], datetime]) -> dict[tuple[int, str], int]:
    """The Visitor id of each (neuron, anonymous id), creating the missing ones; moves last_seen_at forward
    (the latest start of the visitor's sessions rolled up)."""
    by_neuron: dict[int, list[str]] = defaultdict(list)
    for neuron_id, anonymous_id in last_seen:
        by_neuron[neuron_id].append(anonymous_id)

    def existing() -> dict[tuple[int, str], Visitor]:
        out = {}
        for neuron_id, anonymous_ids in by_neuron.items():
            for i in range(0, len(anonymous_ids), 500):
                for v in Visitor.objects.filter(neuron_id=neuron_id, anonymous_id__in=anonymous_ids[i : i + 500]):
                    out[(v.neuron_id, v.anonymous_id)] = v
        return out

    found = existing()
    missing = [k for k in last_seen if k not in found]
    if missing:
        Visitor.objects.bulk_create(
            [Visitor(neuron_id=n, anonymous_id=a, last_seen_at=last_seen[(n, a)]) for n, a in missing],
            ignore_conflicts=True,
            batch_size=1000,
        )
        found = existing()
    later = [v for k, v in found.items() if v.last_seen_at < last_seen[k]]
    for v in later:
        v.last_seen_at = last_seen[(v.neuron_id, v.anonymous_id)]
    Visitor.objects.bulk_update(later, ["last_seen_at"], batch_size=1000)
    return {k: v.pk for k, v in found.items()}


def _sequences_write(sessions_q: Q) -> int:
    """(Re)write the sequences of the sessions matching `sessions_q`: delete, then insert those with events."""
    sessions = {
        row["id"]: row
        for row in UserSession.objects.filter(sessions_q).values(
            "id", "neuron_id", "anonymous_id", "started_at", "device_type", "country", "utm_source"
        )
    }
    SessionSequence.objects.filter(session__in=UserSession.objects.filter(sessions_q).values("pk")).delete()
    events = (
        BehaviorEvent.objects.filter(session__in=UserSession.objects.filter(sessions_q).values("pk"))
        .order_by("session_id", "timestamp", "pk")
        .values_list("session_id", "timestamp", "pk", "event_type", "event_name", "page_path")
    )
    per_session: dict[int, list[tuple]] = defaultdict(list)
    for session_id, ts, pk, event_type, event_name, page_path in events:
        per_session[session_id].append((ts, pk, (event_type, event_name, page_path)))
    if not per_session:
        _sequence_days_refresh(sessions.values())
        return 0
    actions = actions_ids(e[2] for evs in per_session.values() for e in evs)
    last_seen: dict[tuple[int, str], datetime] = {}
    for session_id in per_session:
        s = sessions[session_id]
        if s["anonymous_id"]:
            key = (s["neuron_id"], s["anonymous_id"])
            last_seen[key] = max(last_seen.get(key, s["started_at"]), s["started_at"])
    visitors = visitors_ids(last_seen)
    rows = []
    for session_id, evs in per_session.items():
        s = sessions[session_id]
        rows.append(
            SessionSequence(
                session_id=session_id,
                neuron_id=s["neuron_id"],
                anonymous_id=s["anonymous_id"],
                visitor_id=visitors.get((s["neuron_id"], s["anonymous_id"])) if s["anonymous_id"] else None,
                started_at=s["started_at"],
                device_type=s["device_type"],
                country=s["country"],
                utm_source=s["utm_source"],
                first_event_at=evs[0][0],
                last_event_at=evs[-1][0],
                event_count=len(evs),
                events=pack([(epoch_us(ts), pk, actions[triple]) for ts, pk, triple in evs]),
                actions=" " + " ".join(str(a) for a in sorted({actions[triple] for _, _, triple in evs})) + " ",
            )
        )
    SessionSequence.objects.bulk_create(rows, batch_size=1000)
    _sequence_days_refresh(sessions.values())
    return len(rows)


def _sequence_days_refresh(sessions: Iterable[dict[str, Any]]) -> None:
    """Rebuild the SequenceDay rows of the days these sessions started on, where days have rows."""
    mark = RollupWatermark.objects.filter(granularity=Granularity.SEQUENCE_DAYS).first()
    if mark is not None:
        _sequence_days_write(
            (s["neuron_id"], floor_day(s["started_at"])) for s in sessions if s["started_at"] < mark.closed_through
        )


@transaction.atomic
def sequences_build(*, start: datetime, end: datetime) -> int:
    """(Re)build the sequences of the sessions that started in [start, end). Returns the sequences written."""
    return _sequences_write(Q(started_at__gte=start, started_at__lt=end))


@transaction.atomic
def sequences_advance(*, through: datetime, chunk: timedelta = DAY) -> int:
    """Build the sequences of sessions that started before `through` and have none yet; move the watermark."""
    return _advance(Granularity.SESSION, UserSession.objects.all(), sequences_build, through=through, chunk=chunk)


@transaction.atomic
def sequences_rebuild_hours(hours: Iterable[datetime]) -> int:
    """Rebuild the sequences touched by these closed hours: sessions that started in them,
    sessions with an event in them, and sequences that said they had one (since erased)."""
    hours = list(hours)
    mark = _watermark(Granularity.SESSION)  # locked: serialises with the advance job's days
    if not hours or mark is None:
        return 0
    q = Q(pk__in=[])
    for hour in hours:
        end = hour + HOUR
        q |= Q(started_at__gte=hour, started_at__lt=end)
        q |= Q(pk__in=BehaviorEvent.objects.filter(timestamp__gte=hour, timestamp__lt=end).values("session_id"))
        q |= Q(
            pk__in=SessionSequence.objects.filter(first_event_at__lt=end, last_event_at__gte=hour).values("session_id")
        )
    return _sequences_write(q & Q(started_at__lt=mark.closed_through))


# Beyond the events grace period, this long again before an ended session's sequence is written
# early: clocks of the web servers and of the worker may differ a little.
SEQUENCE_EARLY_MARGIN = timedelta(minutes=1)
SEQUENCE_EARLY_CHUNK = 2000


def sequences_build_ended(*, now: datetime | None = None) -> int:
    """Write the sequences of the sessions that started since the sequence watermark and ended
    more than the events grace period ago, before their hour closes.

    No event can join such a session any more (ingestion refuses events past the grace
    period, and heartbeats, updates and restores need a live session), so its sequence is
    final. Funnels and journeys then read raw events only of live and just-ended sessions:
    those without a sequence. Each chunk's session rows are locked first, so an ingest still
    in flight for one of them commits before its events are read. Returns the sequences written.
    """
    mark = RollupWatermark.objects.filter(granularity=Granularity.SESSION).first()
    if mark is None:
        return 0
    now = now or timezone.now()
    cut = now - settings.EVENTS_GRACE_PERIOD - SEQUENCE_EARLY_MARGIN
    due = (
        UserSession.objects.filter(started_at__gte=mark.closed_through, ended_at__lt=cut)
        .filter(~Exists(SessionSequence.objects.filter(session_id=OuterRef("pk"))))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    ids = list(due)
    written = 0
    for i in range(0, len(ids), SEQUENCE_EARLY_CHUNK):
        with transaction.atomic():
            chunk = list(
                UserSession.objects.select_for_update(no_key=True)
                .filter(pk__in=ids[i : i + SEQUENCE_EARLY_CHUNK])
                .order_by("pk")
                .values_list("pk", flat=True)
            )
            written += _sequences_write(Q(pk__in=chunk))
    return written


# ---------------------------------------------------------------------------
# Sequence days: each closed day's sequences in one row (SequenceDay)
# ---------------------------------------------------------------------------


def _sequence_day_build(neuron_id: int, day: datetime) -> SequenceDay | None:
    """The SequenceDay of one site and UTC day from its sequences (locked until the transaction
    ends: a concurrent erasure deletes them after this row is written, and marks it stale)."""
    rows = list(
        SessionSequence.objects.select_for_update()
        .filter(neuron_id=neuron_id, started_at__gte=day, started_at__lt=day + DAY)
        .order_by("session_id")
        .values_list(
            "session_id",
            "visitor_id",
            "event_count",
            "device_type",
            "country",
            "utm_source",
            "first_event_at",
            "last_event_at",
            "events",
        )
    )
    if not rows:
        return None
    labels: dict[str, list[str]] = {name: [] for name in FILTER_FIELDS}
    positions: dict[str, dict[str, int]] = {name: {} for name in FILTER_FIELDS}
    header = np.zeros(len(rows), dtype=DAY_HEADER_DTYPE)
    for i, (session_id, visitor_id, count, *values) in enumerate(rows):
        header[i]["session"] = session_id
        header[i]["visitor"] = visitor_id if visitor_id is not None else -session_id
        header[i]["count"] = count
        for name, value in zip(FILTER_FIELDS, values[:3], strict=True):
            if value not in positions[name]:
                positions[name][value] = len(labels[name])
                labels[name].append(value)
            header[i][name] = positions[name][value]
    return SequenceDay(
        neuron_id=neuron_id,
        day=day,
        session_count=len(rows),
        first_event_at=min(r[6] for r in rows),
        last_event_at=max(r[7] for r in rows),
        headers=header.tobytes(),
        events=b"".join(bytes(r[8]) for r in rows),
        labels=labels,
    )


def _sequence_days_write(keys: Iterable[tuple[int, datetime]]) -> int:
    """(Re)build the SequenceDay rows of these (site, UTC day) pairs; a day left without
    sequences loses its row. Returns the rows written."""
    written = 0
    for neuron_id, day in sorted(set(keys)):
        SequenceDay.objects.filter(neuron_id=neuron_id, day=day).delete()
        block = _sequence_day_build(neuron_id, day)
        if block is not None:
            block.save()
            written += 1
    return written


@transaction.atomic
def sequence_days_advance() -> int:
    """Build the SequenceDay rows of the UTC days wholly before the sequence watermark that have
    sequences and no row, or a stale one; move the sequence-days watermark to that day."""
    sequences = RollupWatermark.objects.filter(granularity=Granularity.SESSION).first()
    if sequences is None:
        return 0
    mark = _watermark(Granularity.SEQUENCE_DAYS)
    through = floor_day(sequences.closed_through)
    start = mark.closed_through if mark is not None else None
    fresh = SessionSequence.objects.filter(started_at__lt=through)
    if start is not None:
        fresh = fresh.filter(started_at__gte=start)
    days = {
        (neuron_id, floor_day(day))
        for neuron_id, day in fresh.annotate(day=TruncDay("started_at", tzinfo=UTC))
        .values_list("neuron_id", "day")
        .distinct()
    }
    days |= set(SequenceDay.objects.filter(stale=True).values_list("neuron_id", "day"))
    written = _sequence_days_write(days)
    if mark is None or through > mark.closed_through:
        _set_watermark(Granularity.SEQUENCE_DAYS, through)
    return written


def sequence_day_mark_stale(*, neuron_id: int, started_at: datetime) -> None:
    """A sequence of this day is gone: blank the day's row (it held that session's events) and
    leave it stale, so reports read the day from its sequences until the next run rebuilds it."""
    SequenceDay.objects.filter(neuron_id=neuron_id, day=floor_day(started_at), stale=False).update(
        stale=True, headers=b"", events=b"", labels={}
    )
