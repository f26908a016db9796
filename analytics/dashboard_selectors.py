"""Reads for the operator dashboard pages that are about single sessions and live traffic.

Aggregate reports (metrics, trends, funnels, journeys, retention) come from
analytics.selectors; this module holds the explorer and session-page reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from federation.models import Neuron
from privacy.consent import PURPOSES
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


def consent_rates(*, since: datetime) -> dict[str, Any]:
    """Share of sessions started since `since` that granted each purpose (from their consent snapshots)."""
    sessions = UserSession.objects.filter(started_at__gte=since)
    counts = sessions.aggregate(
        total=Count("id"),
        gpc=Count("id", filter=Q(gpc=True)),
        **{purpose: Count("id", filter=Q(**{f"consent__{purpose}": True})) for purpose in PURPOSES},
    )
    total = counts.pop("total")
    gpc = counts.pop("gpc")
    return {
        "total": total,
        "gpc": gpc,
        "rates": [
            {"purpose": purpose, "granted": counts[purpose], "rate": (counts[purpose] / total) if total else 0.0}
            for purpose in PURPOSES
        ],
    }


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
