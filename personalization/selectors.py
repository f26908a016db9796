"""Reads for personalization: facts for rules, live segment evaluation, interests, slots, items."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from federation.models import Neuron
from personalization.interests import weights_at, weights_top
from personalization.models import (
    Archetype,
    ArchetypeMembership,
    CategoryRule,
    ProfileInterest,
    Segment,
    SegmentMembership,
    SessionInterest,
)
from personalization.rules import EventSpec, Facts, rule_evaluate, rule_event_specs
from privacy.consent import has_consent
from sessions_app.models import BehaviorEvent, UserSession

# Path-prefix mappings per neuron, cached in the process: they change rarely (admin) and
# are read on every ingested batch. A change reaches every process within this time.
CATEGORY_RULES_TTL_SECONDS = 60.0
_category_rules_cache: dict[int, tuple[float, list[tuple[str, str]]]] = {}


def category_rules_for(*, neuron_id: int, fresh: bool = False) -> list[tuple[str, str]]:
    """The neuron's path-prefix mapping, longest prefix first."""
    now = time.monotonic()
    cached = _category_rules_cache.get(neuron_id)
    if cached is not None and not fresh and now - cached[0] < CATEGORY_RULES_TTL_SECONDS:
        return cached[1]
    rules = CategoryRule.objects.filter(neuron_id=neuron_id).values_list("path_prefix", "category")
    ordered = sorted(rules, key=lambda rule: len(rule[0]), reverse=True)
    _category_rules_cache[neuron_id] = (now, ordered)
    return ordered


def category_rules_forget(*, neuron_id: int) -> None:
    _category_rules_cache.pop(neuron_id, None)


# ---------------------------------------------------------------------------
# Interests
# ---------------------------------------------------------------------------


def _decayed(row: SessionInterest | ProfileInterest | None, now: datetime) -> dict[str, float]:
    if row is None:
        return {}
    return weights_at(row.weights, as_of=row.as_of, at=now, half_life=settings.PERSONALIZATION_INTEREST_HALF_LIFE)


@dataclass(frozen=True)
class InterestView:
    session: dict[str, float]
    profile: dict[str, float] | None
    engagement: float | None
    archetype: Archetype | None


def interests_for_session(*, session: UserSession, now: datetime | None = None) -> InterestView:
    now = now or timezone.now()
    session_row = SessionInterest.objects.filter(session=session).first()
    profile_row = ProfileInterest.objects.filter(profile_id=session.profile_id).first() if session.profile_id else None
    return InterestView(
        session=_decayed(session_row, now),
        profile=_decayed(profile_row, now) if session.profile_id else None,
        engagement=profile_row.engagement_score if profile_row else None,
        archetype=archetype_for_session(session=session, now=now),
    )


# ---------------------------------------------------------------------------
# Facts and live segment evaluation
# ---------------------------------------------------------------------------


def _event_counts(
    *, sessions: Sequence[UserSession], specs: Iterable[EventSpec], now: datetime
) -> dict[int, dict[EventSpec, int]]:
    """Counts per session for each window: over the profile's events when it has one.

    Two aggregate queries per window, whatever the number of sessions.
    """
    out: dict[int, dict[EventSpec, int]] = defaultdict(dict)
    profile_ids = {s.profile_id for s in sessions if s.profile_id}
    anonymous_ids = [s.pk for s in sessions if not s.profile_id]
    for spec in specs:
        events = BehaviorEvent.objects.filter(timestamp__gte=now - timedelta(days=spec.within_days), timestamp__lte=now)
        if spec.event_type:
            events = events.filter(event_type=spec.event_type)
        if spec.event_name:
            events = events.filter(event_name=spec.event_name)
        by_profile: dict[int, int] = {}
        by_session: dict[int, int] = {}
        if profile_ids:
            by_profile = dict(
                events.filter(profile_id__in=profile_ids)
                .values_list("profile_id")
                .annotate(n=Count("id"))
                .values_list("profile_id", "n")
            )
        if anonymous_ids:
            by_session = dict(
                events.filter(session_id__in=anonymous_ids)
                .values_list("session_id")
                .annotate(n=Count("id"))
                .values_list("session_id", "n")
            )
        for s in sessions:
            out[s.pk][spec] = by_profile.get(s.profile_id, 0) if s.profile_id else by_session.get(s.pk, 0)
    return out


def facts_for_sessions(
    *, sessions: Sequence[UserSession], specs: Iterable[EventSpec] = (), now: datetime
) -> dict[int, Facts]:
    """Facts for a batch of sessions (with `profile` selected): a constant number of queries."""
    specs = list(specs)
    session_rows = {row.session_id: row for row in SessionInterest.objects.filter(session__in=sessions)}
    profile_ids = {s.profile_id for s in sessions if s.profile_id}
    profile_rows = {row.profile_id: row for row in ProfileInterest.objects.filter(profile_id__in=profile_ids)}
    counts = _event_counts(sessions=sessions, specs=specs, now=now) if specs else {}
    out: dict[int, Facts] = {}
    for s in sessions:
        session_interests = _decayed(session_rows.get(s.pk), now)
        profile_row = profile_rows.get(s.profile_id) if s.profile_id else None
        profile = s.profile
        out[s.pk] = Facts(
            traits=(profile.traits if profile and isinstance(profile.traits, dict) else {}),
            interests=_decayed(profile_row, now) if profile_row else session_interests,
            session_interests=session_interests,
            engagement=profile_row.engagement_score if profile_row else s.engagement_score,
            session_engagement=s.engagement_score,
            page_views=s.page_view_count,
            device=s.device_type,
            country=s.country,
            browser=s.browser,
            os=s.os,
            utm={key: getattr(s, f"utm_{key}") for key in ("source", "medium", "campaign", "term", "content")},
            consent=s.consent if isinstance(s.consent, dict) else {},
            identified=bool(profile and profile.user_id_hash),
            event_counts=counts.get(s.pk, {}),
        )
    return out


def segments_evaluate(
    *, segments: Sequence[Segment], sessions: Sequence[UserSession], now: datetime
) -> dict[int, set[int]]:
    """{segment id: ids of the sessions that match it}, for a batch of sessions.

    Live evaluation and the materialization job both go through here, so a
    materialized list is exactly what live evaluation said at that moment.
    """
    specs: set[EventSpec] = set()
    for segment in segments:
        specs |= rule_event_specs(segment.rule)
    facts = facts_for_sessions(sessions=sessions, specs=specs, now=now)
    return {segment.pk: {s.pk for s in sessions if rule_evaluate(segment.rule, facts[s.pk])} for segment in segments}


def segments_for_session(*, session: UserSession, now: datetime | None = None) -> list[Segment]:
    """The active segments of the session's neuron that the session matches right now."""
    now = now or timezone.now()
    segments = list(Segment.objects.filter(neuron_id=session.neuron_id, is_active=True))
    if not segments:
        return []
    matched = segments_evaluate(segments=segments, sessions=[session], now=now)
    return [segment for segment in segments if session.pk in matched[segment.pk]]


def segment_list(*, neuron: Neuron | None = None) -> QuerySet[Segment]:
    qs = Segment.objects.select_related("neuron").order_by("neuron__slug", "slug")
    if neuron is not None:
        qs = qs.filter(neuron=neuron)
    return qs


def segment_members(*, segment: Segment) -> QuerySet[SegmentMembership]:
    """The materialized list: member sessions with their profiles, newest membership id first."""
    return SegmentMembership.objects.filter(segment=segment).select_related("session", "session__profile")


def segment_member_session_ids(*, neuron_slug: str, slug: str) -> QuerySet[SegmentMembership]:
    """Session ids on a segment's stored list (its last materialization), as a subquery."""
    return SegmentMembership.objects.filter(segment__neuron__slug=neuron_slug, segment__slug=slug).values("session_id")


def segment_get(*, segment_id: int) -> Segment | None:
    return Segment.objects.select_related("neuron").filter(pk=segment_id).first()


# ---------------------------------------------------------------------------
# Archetypes
# ---------------------------------------------------------------------------


def archetype_list(*, neuron: Neuron | None = None) -> QuerySet[Archetype]:
    qs = Archetype.objects.select_related("neuron").order_by("neuron__slug", "-size", "key")
    if neuron is not None:
        qs = qs.filter(neuron=neuron)
    return qs


def archetype_nearest(*, weights: dict[str, float], archetypes: Sequence[Archetype]) -> Archetype | None:
    """The archetype whose unit centroid is closest (cosine) to a vector; None for an empty vector."""
    norm = sum(w * w for w in weights.values()) ** 0.5
    if norm == 0 or not archetypes:
        return None

    def similarity(archetype: Archetype) -> float:
        return sum(weights.get(c, 0.0) * w for c, w in archetype.centroid.items()) / norm

    return max(archetypes, key=lambda a: (similarity(a), a.size, a.key))


def archetype_for_session(*, session: UserSession, now: datetime | None = None) -> Archetype | None:
    """The profile's stored archetype; for a session without one, the nearest to its live vector."""
    if session.profile_id:
        membership = (
            ArchetypeMembership.objects.select_related("archetype").filter(profile_id=session.profile_id).first()
        )
        if membership:
            return membership.archetype
    archetypes = list(Archetype.objects.filter(neuron_id=session.neuron_id))
    if not archetypes:
        return None
    now = now or timezone.now()
    row = None
    if session.profile_id:
        row = ProfileInterest.objects.filter(profile_id=session.profile_id).first()
    if row is None:
        row = SessionInterest.objects.filter(session=session).first()
    return archetype_nearest(weights=_decayed(row, now), archetypes=archetypes)


def top_categories(weights: dict[str, float], n: int = 5) -> list[dict[str, Any]]:
    return [{"category": c, "weight": round(w, 4)} for c, w in weights_top(weights, n)]


def personalization_allowed(session: UserSession) -> bool:
    return has_consent(session.consent, "personalization")


def sessions_for_materialization(*, neuron_id: int, now: datetime) -> QuerySet[UserSession]:
    since = now - settings.PERSONALIZATION_SEGMENT_WINDOW
    return (
        UserSession.objects.select_related("profile")
        .filter(neuron_id=neuron_id)
        .filter(Q(last_activity_at__gte=since))
        .order_by("pk")
    )


# ---------------------------------------------------------------------------
# Recommendations
# ---------------------------------------------------------------------------

HISTORY_EVENTS = 200


def item_history_for_session(*, session: UserSession) -> tuple[list[str], list[str]]:
    """(viewed, bought) item ids of the visitor, oldest first: the profile's, else the session's."""
    from personalization.recommend import event_items

    events = BehaviorEvent.objects.all()
    events = (
        events.filter(session__profile_id=session.profile_id) if session.profile_id else events.filter(session=session)
    )
    rows = list(
        events.order_by("-timestamp", "-pk").values_list("event_type", "event_name", "properties")[:HISTORY_EVENTS]
    )
    viewed: list[str] = []
    bought: list[str] = []
    for event_type, event_name, properties in reversed(rows):
        purchase, items = event_items(event_type=event_type, event_name=event_name, properties=properties)
        viewed.extend(items)
        if purchase:
            bought.extend(items)
    return viewed, bought


def recommendations_for_session(*, session: UserSession, kind: str, limit: int) -> tuple[bool, list[Any]]:
    """(personalized, recommendations). Without personalization consent: popularity only,
    and the visitor's history is not read at all."""
    from personalization.models import ItemNeighbour, ItemPopularity
    from personalization.recommend import RECENT_ITEMS, Neighbour, recommend

    if not personalization_allowed(session):
        popular = list(
            ItemPopularity.objects.filter(neuron_id=session.neuron_id, kind=kind)
            .order_by("-visitors", "item")
            .values_list("item", flat=True)[:limit]
        )
        return False, recommend(history=[], neighbours={}, popular=popular, limit=limit)
    viewed, bought = item_history_for_session(session=session)
    history = bought if kind == "bought" else viewed
    seen = set(viewed) | set(bought)
    recent = list(dict.fromkeys(reversed(history)))[:RECENT_ITEMS]
    neighbours: dict[str, list[Neighbour]] = defaultdict(list)
    for item, neighbour, score, together in (
        ItemNeighbour.objects.filter(neuron_id=session.neuron_id, kind=kind, item__in=recent)
        .order_by("item", "-score")
        .values_list("item", "neighbour", "score", "together")
    ):
        neighbours[item].append(Neighbour(neighbour, score, together))
    popular = list(
        ItemPopularity.objects.filter(neuron_id=session.neuron_id, kind=kind)
        .exclude(item__in=seen)
        .order_by("-visitors", "item")
        .values_list("item", flat=True)[:limit]
    )
    return True, recommend(history=history, neighbours=neighbours, popular=popular, limit=limit, exclude=seen)


# ---------------------------------------------------------------------------
# Adaptive UI preferences
# ---------------------------------------------------------------------------

PREFERENCE_DEFAULTS: dict[str, Any] = {"theme": "system", "language": None, "reducedMotion": False, "layout": {}}


def preferences_get(*, session: UserSession) -> dict[str, Any]:
    """The UI preferences of the session's person (from the profile, shared across devices)."""
    stored = session.profile.preferences if session.profile_id and session.profile else {}
    stored = stored if isinstance(stored, dict) else {}
    out = dict(PREFERENCE_DEFAULTS)
    for key in PREFERENCE_DEFAULTS:
        if key in stored:
            out[key] = stored[key]
    if not isinstance(out["layout"], dict):
        out["layout"] = {}
    return out


def neuron_get_by_slug(*, slug: str) -> Neuron | None:
    return Neuron.objects.filter(slug=slug).first()


def rule_segments_summary(*, neuron_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Active rule segments with their materialized sizes, for the segments report (one query)."""
    qs = Segment.objects.filter(is_active=True).select_related("neuron").order_by("neuron__slug", "slug")
    if neuron_ids is not None:
        qs = qs.filter(neuron_id__in=neuron_ids)
    return [
        {
            "id": f"rule:{segment.neuron.slug}:{segment.slug}",
            "kind": "rule",
            "name": segment.name,
            "sessions": segment.size,
            "materializedAt": segment.materialized_at.isoformat() if segment.materialized_at else None,
        }
        for segment in qs
    ]
