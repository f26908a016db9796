"""Demo personalization for `manage.py seed_demo`: vectors, segments, a hero slot, archetypes, items.

The demo generator writes events in bulk (not through ingestion), so the
interest vectors are built here from those stored events, with the same
arithmetic ingestion uses. Idempotent: existing demo segments and slots are kept.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction

from federation.models import Neuron
from personalization.interests import contributions_from_events, weights_add
from personalization.models import CategoryRule, ContentSlot, ContentVariant, ProfileInterest, Segment, SessionInterest
from personalization.selectors import category_rules_for
from personalization.services import (
    archetypes_compute,
    profile_engagement,
    recommendations_compute,
    segment_create,
    segments_materialize,
)
from sessions_app.models import BehaviorEvent, GlobalUserProfile

DEMO_SEGMENTS = [
    (
        "Buyers this month",
        {"field": "events", "op": "gte", "value": 1, "withinDays": 30, "eventType": "conversion"},
    ),
    (
        "Engaged mobile visitors",
        {
            "all": [
                {"field": "device", "op": "eq", "value": "mobile"},
                {"field": "engagement", "op": "gte", "value": 30},
            ]
        },
    ),
    ("Outdoor fans", {"field": "interest.outdoor", "op": "gte", "value": 1}),
    ("Known customers", {"field": "identified", "op": "eq", "value": True}),
]
# The shop's pages that are not about a topic; product pages carry their category as a property.
DEMO_IGNORED_PREFIXES = ["/product", "/cart", "/checkout", "/about", "/pricing", "/support"]
DEMO_HERO = [
    ("welcome", {"title": "Welcome to the demo shop"}, {}, 0, True),
    ("outdoor-sale", {"title": "Tents and boots, 20% off"}, {"interests": {"outdoor": 1}}, 10, False),
    ("thanks-buyer", {"title": "Thanks for shopping with us"}, {"segments": ["buyers-this-month"]}, 20, False),
]


@dataclass(frozen=True)
class DemoSummary:
    vectors: int
    segments: dict[str, int]
    archetypes: int


def _vectors(*, neuron: Neuron) -> int:
    """Session and profile vectors from the stored events of consenting sessions, in bulk."""
    half_life = settings.PERSONALIZATION_INTEREST_HALF_LIFE
    limit = settings.PERSONALIZATION_MAX_CATEGORIES
    rules = category_rules_for(neuron_id=neuron.pk, fresh=True)
    by_session: dict[int, list[BehaviorEvent]] = defaultdict(list)
    by_profile: dict[int, list[BehaviorEvent]] = defaultdict(list)
    events = BehaviorEvent.objects.filter(neuron=neuron, session__consent__personalization=True).only(
        "session_id", "profile_id", "event_type", "event_name", "properties", "page_path", "timestamp", "received_at"
    )
    for event in events.iterator(chunk_size=5000):
        by_session[event.session_id].append(event)
        if event.profile_id:
            by_profile[event.profile_id].append(event)

    def build(group: list[BehaviorEvent]) -> tuple[dict[str, float], datetime | None]:
        contributions = contributions_from_events(group, path_rules=rules)
        return weights_add({}, as_of=None, contributions=contributions, half_life=half_life, max_categories=limit)

    session_rows = []
    for session_id, group in by_session.items():
        weights, as_of = build(group)
        if as_of:
            session_rows.append(
                SessionInterest(session_id=session_id, weights=weights, as_of=as_of, event_count=len(group))
            )
    profile_rows = []
    for profile_id, group in by_profile.items():
        weights, as_of = build(group)
        if as_of:
            engagement, sessions = profile_engagement(profile=GlobalUserProfile(pk=profile_id))
            profile_rows.append(
                ProfileInterest(
                    profile_id=profile_id,
                    weights=weights,
                    as_of=as_of,
                    event_count=len(group),
                    engagement_score=engagement,
                    session_count=sessions,
                )
            )
    with transaction.atomic():
        SessionInterest.objects.filter(session__neuron=neuron).delete()
        ProfileInterest.objects.filter(profile__neuron=neuron).delete()
        SessionInterest.objects.bulk_create(session_rows, batch_size=1000)
        ProfileInterest.objects.bulk_create(profile_rows, batch_size=1000)
    return len(session_rows) + len(profile_rows)


def demo_personalization_generate(*, neuron: Neuron) -> DemoSummary:
    for prefix in DEMO_IGNORED_PREFIXES:  # "/product" also covers "/products"
        CategoryRule.objects.get_or_create(neuron=neuron, path_prefix=prefix, defaults={"category": ""})
    vectors = _vectors(neuron=neuron)
    for name, rule in DEMO_SEGMENTS:
        if not Segment.objects.filter(neuron=neuron, name=name).exists():
            segment_create(neuron=neuron, name=name, rule=rule, actor="system:seed_demo")
    slot, _ = ContentSlot.objects.get_or_create(neuron=neuron, key="hero", defaults={"description": "Home page hero"})
    for key, content, targeting, priority, is_default in DEMO_HERO:
        ContentVariant.objects.get_or_create(
            slot=slot,
            key=key,
            defaults={"content": content, "targeting": targeting, "priority": priority, "is_default": is_default},
        )
    sizes = segments_materialize(neuron=neuron)
    archetypes = archetypes_compute(neuron=neuron)
    recommendations_compute(neuron=neuron)
    return DemoSummary(vectors=vectors, segments=sizes, archetypes=len(archetypes))
