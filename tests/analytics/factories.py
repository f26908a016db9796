"""A reproducible visitor population for analytics tests (and its plain-Python copy)."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sessions_app.engagement import engagement_score
from sessions_app.models import AnonymousTrafficCount, BehaviorEvent, UserSession
from sessions_app.services import session_expiry, token_hash
from tests.federation.factories import NeuronFactory

PAGES = ["/", "/pricing", "/signup", "/blog/a", "/blog/b", "/docs", "/checkout"]
REFERRERS = ["", "", "https://www.google.com/search?q=x", "https://news.example.org/story", "android-app://com.x"]
UTM_SOURCES = ["", "", "newsletter", "ads"]
DEVICES = ["desktop", "mobile", "tablet"]
COUNTRIES = ["GB", "US", "DE", ""]


@dataclass
class Population:
    neurons: list
    sessions: list[UserSession] = field(default_factory=list)
    events: list[BehaviorEvent] = field(default_factory=list)


def build_population(
    *, start: datetime, days: int = 4, sessions: int = 160, neurons: int = 2, seed: int = 7
) -> Population:
    """Sessions of returning and new visitors over `days`, with page views, clicks,
    custom events and conversions; some visitors without analytics consent."""
    rng = random.Random(seed)
    sites = [NeuronFactory() for _ in range(neurons)]
    pop = Population(neurons=sites)
    visitors = [(rng.choice(sites), str(uuid.UUID(int=rng.getrandbits(128)))) for _ in range(sessions // 2)]
    session_rows: list[UserSession] = []
    pending_events: list[list[dict]] = []
    for _ in range(sessions):
        site, anon = rng.choice(visitors)
        started = start + timedelta(seconds=rng.randrange(days * 86400))
        consent = rng.random() > 0.15
        t = started
        evs: list[dict] = []
        for _ in range(rng.choice([1, 1, 2, 3, 4, 6, 9])):
            t = t + timedelta(seconds=rng.randrange(5, 900))
            kind = rng.random()
            if kind < 0.6:
                evs.append(
                    {"event_type": "page_view", "event_name": "", "page_path": rng.choice(PAGES), "timestamp": t}
                )
            elif kind < 0.8:
                evs.append(
                    {
                        "event_type": "click",
                        "event_name": rng.choice(["cta", "signup"]),
                        "page_path": "",
                        "timestamp": t,
                    }
                )
            elif kind < 0.9:
                evs.append(
                    {"event_type": "custom", "event_name": rng.choice(["video", ""]), "page_path": "", "timestamp": t}
                )
            else:
                evs.append({"event_type": "conversion", "event_name": "purchase", "page_path": "", "timestamp": t})
        if not consent:
            evs = []  # no analytics consent: no behavioural rows
        last = evs[-1]["timestamp"] if evs else started
        page_views = sum(e["event_type"] == "page_view" for e in evs)
        interactions = sum(e["event_type"] in ("click", "custom") for e in evs)
        conversions = sum(e["event_type"] == "conversion" for e in evs)
        landing = next((e["page_path"] for e in evs if e["event_type"] == "page_view"), "")
        session_rows.append(
            UserSession(
                neuron=site,
                token_hash=token_hash(uuid.uuid4().hex),
                token_rotated_at=started,
                anonymous_id=anon,
                device_type=rng.choice(DEVICES),
                browser=rng.choice(["Chrome", "Firefox", "Mobile Safari"]),
                os=rng.choice(["Windows", "iOS", "Android", "Mac OS X"]),
                country=rng.choice(COUNTRIES),
                referrer=rng.choice(REFERRERS),
                landing_page=("https://site.example" + landing + "?x=1") if landing and rng.random() < 0.3 else landing,
                utm_source=rng.choice(UTM_SOURCES),
                utm_medium=rng.choice(["", "email", "cpc"]),
                utm_campaign=rng.choice(["", "spring"]),
                started_at=started,
                last_activity_at=last,
                expires_at=session_expiry(started_at=started, last_activity_at=last),
                ended_at=last if rng.random() < 0.5 else None,
                event_count=len(evs),
                page_view_count=page_views,
                interaction_count=interactions,
                conversion_count=conversions,
                engagement_score=engagement_score(
                    duration=last - started, page_views=page_views, interactions=interactions, conversions=conversions
                ),
                consent={"analytics": consent, "personalization": rng.random() < 0.5, "marketing": False},
            )
        )
        pending_events.append(evs)
    pop.sessions = UserSession.objects.bulk_create(session_rows)
    if not all(s.pk for s in pop.sessions):  # backends without RETURNING ids on bulk insert
        pop.sessions = list(UserSession.objects.filter(neuron__in=sites).order_by("pk"))
    event_rows = []
    for session, evs in zip(pop.sessions, pending_events, strict=True):
        for e in evs:
            event_rows.append(
                BehaviorEvent(
                    neuron_id=session.neuron_id,
                    session=session,
                    anonymous_id=session.anonymous_id,
                    received_at=e["timestamp"],
                    message_id=str(uuid.UUID(int=rng.getrandbits(128))),
                    **e,
                )
            )
    BehaviorEvent.objects.bulk_create(event_rows)
    pop.events = list(BehaviorEvent.objects.filter(neuron__in=sites).order_by("pk"))
    for site in sites:
        for d in range(days):
            AnonymousTrafficCount.objects.create(
                neuron=site,
                day=(start + timedelta(days=d)).date(),
                path="/",
                device_type=rng.choice(DEVICES),
                country=rng.choice(COUNTRIES),
                page_views=rng.randrange(1, 50),
                events=rng.randrange(1, 80),
            )
    return pop
