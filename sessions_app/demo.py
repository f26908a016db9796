"""Realistic demo data for `make run`: visitors across devices, countries, pages and a purchase funnel.

Deterministic for a given seed. Rows are written in bulk (the demo needs thousands of
sessions in seconds), but every rule the product applies is respected: visitors
without analytics consent leave only anonymous counts, counters and engagement
scores match the events written, IPs exist only as truncated networks.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from federation.models import Neuron
from privacy.crypto import encrypt, identifier_hash
from sessions_app.engagement import engagement_score
from sessions_app.models import AnonymousTrafficCount, BehaviorEvent, GlobalUserProfile, UserSession
from sessions_app.services import session_expiry, token_generate, token_hash

# (device type, browser, os, weight)
DEVICES = [
    ("desktop", "Chrome", "Windows", 30),
    ("desktop", "Edge", "Windows", 8),
    ("desktop", "Safari", "Mac OS X", 12),
    ("desktop", "Firefox", "Linux", 4),
    ("mobile", "Mobile Safari", "iOS", 22),
    ("mobile", "Chrome Mobile", "Android", 18),
    ("tablet", "Mobile Safari", "iOS", 5),
    ("tablet", "Chrome", "Android", 1),
]
# (country, a documentation-style /24 network for it, weight)
COUNTRIES = [
    ("US", "198.51.100.0", 30),
    ("GB", "81.2.69.0", 14),
    ("DE", "91.64.10.0", 12),
    ("FR", "90.84.20.0", 8),
    ("IN", "49.36.30.0", 10),
    ("BR", "177.12.40.0", 6),
    ("JP", "126.10.50.0", 6),
    ("CA", "142.112.60.0", 5),
    ("AU", "1.128.70.0", 4),
    ("NL", "145.53.80.0", 5),
]
REFERRERS = [
    ("", "", 35),
    ("https://www.google.com/", "", 30),
    ("https://news.ycombinator.com/", "", 6),
    ("https://twitter.com/", "social", 8),
    ("https://www.facebook.com/", "social", 6),
    ("https://newsletter.example.com/", "newsletter", 15),
]
CATEGORIES = ["electronics", "books", "outdoor", "kitchen", "fashion"]
CONTENT_PAGES = ["/", "/blog", "/blog/how-to-choose", "/about", "/pricing", "/support"]


@dataclass(frozen=True)
class DemoSummary:
    sessions: int
    events: int
    anonymous_page_views: int
    profiles: int


def _weighted(rng: random.Random, rows: list[tuple]) -> tuple:
    return rng.choices(rows, weights=[row[-1] for row in rows], k=1)[0]


def _journey(rng: random.Random) -> list[tuple[str, str, str, dict]]:
    """(event_type, event_name, path, properties) steps of one visit, funnel included."""
    steps: list[tuple[str, str, str, dict]] = []
    landing = rng.choice(CONTENT_PAGES + ["/products"] * 3)
    steps.append(("page_view", "", landing, {}))
    if rng.random() < 0.35:
        return steps  # bounce
    for _ in range(rng.randint(0, 3)):
        steps.append(("page_view", "", rng.choice(CONTENT_PAGES), {}))
        if rng.random() < 0.4:
            steps.append(("click", "cta_click", steps[-1][2], {"buttonId": "cta-primary"}))
    # The purchase funnel: products -> product -> cart -> checkout -> purchase, with drop-off.
    if rng.random() < 0.7:
        steps.append(("page_view", "", "/products", {}))
        category = rng.choice(CATEGORIES)
        if rng.random() < 0.65:
            product = f"{category}-{rng.randint(1, 40)}"
            steps.append(("page_view", "", f"/product/{product}", {"category": category, "productId": product}))
            steps.append(
                ("custom", "product_view", f"/product/{product}", {"category": category, "productId": product})
            )
            if rng.random() < 0.45:
                steps.append(("click", "add_to_cart", f"/product/{product}", {"productId": product}))
                steps.append(("page_view", "", "/cart", {}))
                if rng.random() < 0.6:
                    steps.append(("page_view", "", "/checkout", {}))
                    if rng.random() < 0.55:
                        price = round(rng.uniform(9, 400), 2)
                        steps.append(("conversion", "purchase", "/checkout", {"productId": product, "revenue": price}))
    return steps


@transaction.atomic
def demo_data_generate(
    *,
    neuron: Neuron,
    sessions: int = 3000,
    days: int = 30,
    seed: int = 7,
    progress: Callable[[int], None] | None = None,
) -> DemoSummary:
    rng = random.Random(seed)
    now = timezone.now()
    visitors = max(sessions // 2, 1)
    anonymous_ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(visitors)]
    # A tenth of visitors log in; some of them on two devices (the same profile).
    profiles: dict[int, GlobalUserProfile] = {}
    for index in range(0, visitors, 10):
        user_id = f"demo-user-{index}"
        profiles[index] = GlobalUserProfile.objects.create(
            neuron=neuron,
            user_id_hash=identifier_hash(user_id),
            user_id_encrypted=encrypt(user_id),
            traits={"plan": rng.choice(["free", "pro", "team"])},
            preferences={"theme": rng.choice(["light", "dark"])},
            first_seen_at=now - timedelta(days=days),
            last_seen_at=now,
        )

    session_rows: list[UserSession] = []
    session_steps: list[list[tuple[str, str, str, dict]]] = []
    anonymous_counts: dict[tuple, int] = {}
    for n in range(sessions):
        visitor = rng.randrange(visitors)
        device = _weighted(rng, DEVICES)
        country = _weighted(rng, COUNTRIES)
        referrer = _weighted(rng, REFERRERS)
        # More traffic in recent days, and a daily rhythm peaking in the afternoon (UTC).
        day_offset = min(int(rng.expovariate(1 / (days / 2.5))), days - 1)
        hour = min(max(int(rng.gauss(15, 4)), 0), 23)
        started = (now - timedelta(days=day_offset)).replace(hour=hour, minute=rng.randrange(60), second=0)
        if started > now:
            started -= timedelta(days=1)
        steps = _journey(rng)
        analytics = rng.random() < 0.82
        consent = {
            "analytics": analytics,
            "personalization": analytics and rng.random() < 0.7,
            "marketing": rng.random() < 0.3,
            "fingerprinting": False,
            "saleSharing": False,
        }
        gaps = [rng.randint(8, 150) for _ in steps]
        last = started + timedelta(seconds=sum(gaps[1:]))
        is_live = day_offset == 0 and now - last < timedelta(minutes=20)
        counts = _counters(steps) if analytics else {"events": 0, "page_views": 0, "interactions": 0, "conversions": 0}
        session_rows.append(
            UserSession(
                neuron=neuron,
                token_hash=token_hash(token_generate()),
                token_rotated_at=started,
                anonymous_id=anonymous_ids[visitor],
                profile=profiles.get(visitor - visitor % 10) if visitor % 10 == 0 else None,
                device_type=device[0],
                browser=device[1],
                os=device[2],
                country=country[0],
                ip_truncated=country[1],
                referrer=referrer[0],
                utm_source=referrer[1] and referrer[0].split("/")[2].split(".")[-2],
                utm_medium=referrer[1],
                utm_campaign="autumn-sale" if referrer[1] == "newsletter" else "",
                landing_page=steps[0][2],
                started_at=started,
                last_activity_at=last,
                expires_at=session_expiry(started_at=started, last_activity_at=last),
                ended_at=None if is_live else last,
                end_reason="" if is_live else "timeout",
                event_count=counts["events"],
                page_view_count=counts["page_views"],
                interaction_count=counts["interactions"],
                conversion_count=counts["conversions"],
                engagement_score=engagement_score(
                    duration=last - started,
                    page_views=counts["page_views"],
                    interactions=counts["interactions"],
                    conversions=counts["conversions"],
                )
                if analytics
                else 0.0,
                consent=consent,
            )
        )
        session_steps.append(steps if analytics else [])
        if not analytics:
            for event_type, _, path, _ in steps:
                key = (started.date(), path, device[0], country[0])
                anonymous_counts[key] = anonymous_counts.get(key, 0) + (event_type == "page_view")
        if progress and n % 100 == 99:
            progress(100)

    # PostgreSQL and SQLite >= 3.35 return the new primary keys from a bulk insert.
    UserSession.objects.bulk_create(session_rows, batch_size=500)
    events: list[BehaviorEvent] = []
    for session, steps in zip(session_rows, session_steps, strict=True):
        ts = session.started_at
        for index, (event_type, name, path, props) in enumerate(steps):
            if index:
                ts = ts + timedelta(seconds=rng.randint(8, 150))
            ts = min(ts, session.last_activity_at)
            events.append(
                BehaviorEvent(
                    neuron=neuron,
                    session=session,
                    profile_id=session.profile_id,
                    anonymous_id=session.anonymous_id,
                    event_type=event_type,
                    event_name=name,
                    properties=props,
                    page_url=f"https://demo.example.com{path}",
                    page_path=path,
                    timestamp=ts,
                    received_at=ts,
                    message_id=str(uuid.UUID(int=rng.getrandbits(128))),
                )
            )
    BehaviorEvent.objects.bulk_create(events, batch_size=1000)
    AnonymousTrafficCount.objects.bulk_create(
        [
            AnonymousTrafficCount(
                neuron=neuron, day=day, path=path, device_type=device, country=country, page_views=views, events=views
            )
            for (day, path, device, country), views in anonymous_counts.items()
        ],
        batch_size=1000,
    )
    if progress and sessions % 100:
        progress(sessions % 100)
    return DemoSummary(
        sessions=len(session_rows),
        events=len(events),
        anonymous_page_views=sum(anonymous_counts.values()),
        profiles=len(profiles),
    )


def _counters(steps: list[tuple[str, str, str, dict]]) -> dict[str, int]:
    return {
        "events": len(steps),
        "page_views": sum(1 for step in steps if step[0] == "page_view"),
        "interactions": sum(1 for step in steps if step[0] in {"click", "custom"}),
        "conversions": sum(1 for step in steps if step[0] == "conversion"),
    }
