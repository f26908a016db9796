"""Reads for the operator dashboard pages that are about single sessions and live traffic.

Aggregate reports (metrics, trends, funnels, journeys, retention) come from
analytics.selectors; this module holds the explorer and session-page reads, and
shapes those reports for the report pages' charts and tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from analytics import selectors as analytics
from federation.models import Neuron
from personalization.selectors import archetype_list
from sessions_app.filters import SessionFilter
from sessions_app.models import BehaviorEvent, SessionBridge, UserSession

TIMELINE_LIMIT = 500


@dataclass(frozen=True)
class KeysetPage:
    rows: list[UserSession]
    next_after: int | None  # pass as ?after= for the next (older) page
    prev_before: int | None  # pass as ?before= for the previous (newer) page


def keyset_page(*, queryset: QuerySet[UserSession], after: int | None, before: int | None, size: int) -> KeysetPage:
    """Newest first, by id: a page costs the same at any depth and never repeats or skips a row."""
    if before is not None:
        rows = list(queryset.filter(id__gt=before).order_by("id")[: size + 1])
        has_newer = len(rows) > size
        rows = list(reversed(rows[:size]))
        return KeysetPage(
            rows=rows,
            next_after=rows[-1].id if rows else None,
            prev_before=rows[0].id if rows and has_newer else None,
        )
    if after is not None:
        queryset = queryset.filter(id__lt=after)
    rows = list(queryset.order_by("-id")[: size + 1])
    has_older = len(rows) > size
    rows = rows[:size]
    return KeysetPage(
        rows=rows,
        next_after=rows[-1].id if rows and has_older else None,
        prev_before=rows[0].id if rows and after is not None else None,
    )


def explorer_filterset(data: Any) -> SessionFilter:
    return SessionFilter(data=data, queryset=UserSession.objects.select_related("neuron", "profile"))


@dataclass(frozen=True)
class LinkedDevice:
    session: UserSession | None
    method: str
    confidence: float
    status: str
    evidence: dict[str, Any]
    anonymous_id: str


@dataclass(frozen=True)
class SessionDetail:
    session: UserSession
    events: list[BehaviorEvent]
    journey: list[str]
    links: list[LinkedDevice]
    profile_sessions: list[UserSession]


def session_detail(*, public_id: Any) -> SessionDetail | None:
    session = UserSession.objects.select_related("neuron", "profile", "fingerprint").filter(public_id=public_id).first()
    if session is None:
        return None
    events = list(session.events.order_by("timestamp", "id")[:TIMELINE_LIMIT])
    journey: list[str] = []
    for event in events:
        if event.page_path and (not journey or journey[-1] != event.page_path):
            journey.append(event.page_path)

    bridge_q = Q(from_session=session) | Q(to_session=session)
    if session.profile_id:
        bridge_q |= Q(from_profile_id=session.profile_id) | Q(to_profile_id=session.profile_id)
    bridges = (
        SessionBridge.objects.filter(bridge_q)
        .select_related("from_session", "to_session")
        .order_by("-confidence", "-created_at")[:50]
    )
    links = []
    for bridge in bridges:
        other = bridge.to_session if bridge.from_session_id == session.pk else bridge.from_session
        other_anon = bridge.to_anonymous_id if bridge.from_session_id == session.pk else bridge.from_anonymous_id
        links.append(
            LinkedDevice(
                session=other,
                method=bridge.get_method_display(),
                confidence=bridge.confidence,
                status=bridge.status,
                evidence=bridge.evidence or {},
                anonymous_id=other_anon or (other.anonymous_id if other else ""),
            )
        )
    profile_sessions: list[UserSession] = []
    if session.profile_id:
        profile_sessions = list(
            UserSession.objects.filter(profile_id=session.profile_id)
            .exclude(pk=session.pk)
            .order_by("-started_at")[:20]
        )
    return SessionDetail(
        session=session, events=events, journey=journey, links=links, profile_sessions=profile_sessions
    )


def top_pages_now(*, minutes: int = 30, limit: int = 8, now: datetime | None = None) -> list[dict[str, Any]]:
    """The most viewed pages of the last `minutes` (stored page views, all sites)."""
    since = (now or timezone.now()) - timedelta(minutes=minutes)
    # Naming the sites lets PostgreSQL walk the (neuron, event_type, timestamp) index
    # once per site instead of scanning every event.
    neuron_ids = list(Neuron.objects.values_list("id", flat=True))
    rows = (
        BehaviorEvent.objects.filter(neuron_id__in=neuron_ids, event_type="page_view", timestamp__gte=since)
        .values("page_path")
        .annotate(views=Count("id"))
        .order_by("-views", "page_path")[:limit]
    )
    return [{"path": row["page_path"] or "/", "views": row["views"]} for row in rows]


# ---------------------------------------------------------------------------
# Report pages: compositions of analytics.selectors shaped for the charts
# ---------------------------------------------------------------------------

# The overview's headline numbers, in tile order: (metric, label, format).
OVERVIEW_TILES = (
    ("sessions", "Sessions", "count"),
    ("visitors", "Visitors", "count"),
    ("pageViews", "Page views", "count"),
    ("conversions", "Conversions", "count"),
    ("conversionRate", "Conversion rate", "percent"),
    ("bounceRate", "Bounce rate", "percent"),
    ("avgSessionDuration", "Avg. session", "duration"),
)
METRIC_LABELS = {
    "sessions": "Sessions",
    "visitors": "Visitors",
    "newSessions": "New sessions",
    "pageViews": "Page views",
    "events": "Events",
    "conversions": "Conversions",
    "convertedSessions": "Converted sessions",
    "avgSessionDuration": "Avg. session duration (s)",
    "bounceRate": "Bounce rate",
    "pagesPerSession": "Pages per session",
    "conversionRate": "Conversion rate",
    "avgEngagement": "Avg. engagement",
}
# Metrics that fall (rather than rise) when things go well.
LOWER_IS_BETTER = frozenset({"bounceRate"})
TOP_COUNTRIES = 10


def _display(value: float, fmt: str) -> str:
    if fmt == "percent":
        return f"{value * 100:.1f}%"
    if fmt == "duration":
        minutes, seconds = divmod(round(value), 60)
        return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"
    return f"{int(value):,}"


def _bucket_label(start_iso: str, interval: str) -> str:
    moment = datetime.fromisoformat(start_iso)
    return moment.strftime("%H:%M") if interval == "hour" else moment.strftime("%b %d")


def overview_report(*, scope: analytics.Scope, interval: str, metric: str) -> dict[str, Any]:
    """Headline numbers with the previous period, one metric's trend over both periods, devices and
    countries: what the overview draws below its live tiles."""
    summary = analytics.metrics_summary(scope=scope)
    current = analytics.trends_series(scope=scope, metric=metric, interval=interval)["series"]
    previous = analytics.trends_series(scope=scope.previous, metric=metric, interval=interval)["series"]
    tiles = []
    for name, label, fmt in OVERVIEW_TILES:
        numbers = summary["consented"][name]
        change = numbers["change"]
        tiles.append(
            {
                "metric": name,
                "label": label,
                "value": numbers["value"],
                "display": _display(numbers["value"], fmt),
                "previous": _display(numbers["previous"], fmt),
                "change": None if change is None else round(change * 100, 1),
                "better": None if not change else (change < 0) == (name in LOWER_IS_BETTER),
            }
        )
    devices = analytics.devices_report(scope=scope)["deviceTypes"]
    countries = analytics.geographic_report(scope=scope)["countries"]
    country_rows = [{"label": row["value"] or "Unknown", "value": row["sessions"]} for row in countries]
    if len(country_rows) > TOP_COUNTRIES:
        rest = sum(row["value"] for row in country_rows[TOP_COUNTRIES - 1 :])
        country_rows = [*country_rows[: TOP_COUNTRIES - 1], {"label": "Other", "value": rest}]
    return {
        "tiles": tiles,
        "activeSessions": summary["activeSessions"],
        "period": summary["period"],
        "previousPeriod": summary["previousPeriod"],
        "trend": {
            "name": METRIC_LABELS[metric],
            "current": [{"label": _bucket_label(p["start"], interval), "value": p["value"]} for p in current],
            # The previous period drawn against this one's buckets: point i is bucket i of each.
            "previous": [
                {"label": _bucket_label(p["start"], interval), "value": p["value"]} for p in previous[: len(current)]
            ],
        },
        "devices": [{"label": row["value"] or "unknown", "value": row["sessions"]} for row in devices],
        "deviceRows": devices,
        "countries": country_rows,
        "countryRows": countries[:TOP_COUNTRIES],
    }


def _duration_label(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


def funnel_step_suggestions(*, scope: analytics.Scope, limit: int = 12) -> list[str]:
    """Steps worth offering in the funnel form: the range's top pages and event names/types."""
    pages = analytics.pages_report(scope=scope, limit=limit)["top"]
    events = analytics.events_report(scope=scope, limit=limit)
    out = [f"page:{row['path']}" for row in pages if row["path"]]
    out += [f"event:{row['type']}:{row['name']}" for row in events["names"]]
    out += [f"event:{row['type']}" for row in events["types"]]
    return list(dict.fromkeys(out))


def funnel_page(*, scope: analytics.Scope, steps: list[analytics.FunnelStep], window: timedelta) -> dict[str, Any]:
    report = analytics.funnel_report(scope=scope, steps=steps, window=window)
    rows = report["steps"]
    return {
        **report,
        "entrants": rows[0]["entrants"] if rows else 0,
        "converted": rows[-1]["entrants"] if rows else 0,
        "conversionPercent": round(rows[-1]["conversionFromStart"] * 100, 1) if rows else 0.0,
        "windowLabel": _duration_label(window),
        "chart": [{"label": row["label"], "count": row["entrants"], "dropped": row["dropOff"]} for row in rows],
    }


def _node_label(page: str, level: int, direction: str) -> str:
    if level == 0:
        return page
    return f"{'+' if direction == 'next' else '−'}{level} {page}"


def journey_page(
    *, scope: analytics.Scope, page: str | None, direction: str, depth: int, limit: int
) -> dict[str, Any] | None:
    """The journeys report as a Sankey graph (node names unique per level); without a page, the
    range's most viewed page. None when the range has no page views at all."""
    if not page:
        top = analytics.pages_report(scope=scope, limit=1)["top"]
        if not top:
            return None
        page = top[0]["path"]
    report = analytics.journeys_report(scope=scope, page=page, direction=direction, depth=depth, top=limit)
    nodes = report["nodes"]
    # ECharts lays a Sankey out left to right from sources to targets; "previous" journeys lead
    # into the page, so their links are reversed to keep the page on the right.
    links = [
        {"source": link["target"], "target": link["source"], "value": link["sessions"]}
        if direction == "previous"
        else {"source": link["source"], "target": link["target"], "value": link["sessions"]}
        for link in report["links"]
    ]
    levels: list[list[dict[str, Any]]] = [[] for _ in range(depth + 1)]
    for node in nodes:
        levels[node["level"]].append(node)
    sessions = levels[0][0]["sessions"] if levels[0] else 0
    return {
        **report,
        "sessions": sessions,
        "levels": [
            [{**node, "share": (node["sessions"] / sessions) if sessions else 0.0} for node in level]
            for level in levels[1:]
        ],
        "graph": {
            "nodes": [
                {
                    "name": node["id"],
                    # Not "label": that key is ECharts' per-node label style.
                    "title": _node_label(node["page"], node["level"], direction),
                    "value": node["sessions"],
                    "depth": depth - node["level"] if direction == "previous" else node["level"],
                }
                for node in nodes
            ],
            "links": links,
        },
    }


def retention_page(*, scope: analytics.Scope, period: str, periods: int, now: datetime | None = None) -> dict[str, Any]:
    """The cohort table as a heatmap: rows are cohorts, columns the later periods, cells the share
    (percent) of the cohort seen again; periods that have not started yet, and empty cohorts, are
    left blank."""
    now = now or timezone.now()
    report = analytics.retention_report(scope=scope, period=period, periods=periods, now=now)
    span = timedelta(days=1 if period == "day" else 7)
    today = now.astimezone(scope.tz).date()
    unit = "Day" if period == "day" else "Week"
    rows = []
    for cohort in report["cohorts"]:
        start = date.fromisoformat(cohort["cohort"])
        cells = []
        for cell in cohort["returning"]:
            known = cohort["visitors"] and start + span * cell["period"] <= today
            cells.append({**cell, "percent": round(cell["share"] * 100, 1) if known else None})
        rows.append({**cohort, "cells": cells})
    total = sum(row["visitors"] for row in rows)
    return {
        **report,
        "rows": rows,
        "visitors": total,
        "columns": [f"{unit} {k}" for k in range(1, periods + 1)],
        "heatmap": {
            "columns": [f"{unit} {k}" for k in range(1, periods + 1)],
            "rows": [
                {"label": f"{row['cohort']} ({row['visitors']})", "values": [c["percent"] for c in row["cells"]]}
                for row in rows
            ],
        },
    }


SEGMENT_KINDS = {
    "newVsReturning": "New and returning",
    "device": "Device",
    "country": "Country",
    "consent": "Consent",
    "rule": "Rule segments",
}


def segments_page(*, scope: analytics.Scope) -> dict[str, Any]:
    """Built-in segments of the range by kind, the operators' rule segments and the archetypes of
    the sites in scope, with their sizes."""
    report = analytics.segments_report(scope=scope)
    groups: dict[str, list[dict[str, Any]]] = {}
    rules = []
    for segment in report["segments"]:
        if segment["system"]:
            groups.setdefault(segment["kind"], []).append(segment)
        else:
            rules.append(segment)
    archetypes = list(archetype_list())
    if scope.neuron_ids is not None:
        archetypes = [a for a in archetypes if a.neuron_id in scope.neuron_ids]
    clustered: dict[int, int] = {}
    for archetype in archetypes:
        clustered[archetype.neuron_id] = clustered.get(archetype.neuron_id, 0) + archetype.size
    return {
        **report,
        "groups": [
            {"kind": kind, "title": SEGMENT_KINDS.get(kind, kind), "segments": rows} for kind, rows in groups.items()
        ],
        "rules": rules,
        "archetypes": [
            {
                "site": archetype.neuron.slug,
                "key": archetype.key,
                "label": archetype.label,
                "size": archetype.size,
                "share": archetype.size / clustered[archetype.neuron_id] if clustered[archetype.neuron_id] else 0.0,
                "topCategories": archetype.top_categories,
                "silhouette": archetype.silhouette,
                "computedAt": archetype.computed_at,
            }
            for archetype in archetypes
        ],
        "charts": {
            "segments": [
                {"label": f"{SEGMENT_KINDS.get(s['kind'], s['kind'])}: {s['name']}", "value": s["sessions"]}
                for s in report["segments"]
                if s["system"] and s["kind"] != "consent"
            ],
            "rules": [{"label": s["name"], "value": s["sessions"]} for s in rules],
            "archetypes": [{"label": f"{a.label} ({a.neuron.slug})", "value": a.size} for a in archetypes],
        },
    }
