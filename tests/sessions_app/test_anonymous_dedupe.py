"""Anonymous counting (no analytics consent) recognises a resend by its message ids."""

from __future__ import annotations

import pytest

from sessions_app.live import anonymous_first_seen, live_reset_backoff
from sessions_app.models import AnonymousTrafficCount
from tests.sessions_app.test_events_apis import events_url, make_session, page_view
from tests.sessions_app.test_live import dead_redis_url

pytestmark = pytest.mark.django_db

NO_ANALYTICS = {"analytics": False}


@pytest.fixture(autouse=True)
def _fresh_backoff():
    live_reset_backoff()
    yield
    live_reset_backoff()


def views(path: str = "/a") -> int:
    row = AnonymousTrafficCount.objects.filter(path=path).first()
    return row.page_views if row else 0


def test_a_resent_anonymous_batch_is_counted_once():
    """The same message ids again: answered as duplicates, the aggregates do not move."""
    session, client = make_session(consent=NO_ANALYTICS)
    batch = {"events": [page_view("/a", messageId="r1"), page_view("/a", messageId="r2")]}
    first = client.post(events_url(session.public_id), batch, format="json")
    assert first.json() == {"stored": 0, "duplicates": 0, "anonymous": 2}
    again = client.post(events_url(session.public_id), batch, format="json")
    assert again.status_code == 200
    assert again.json() == {"stored": 0, "duplicates": 2, "anonymous": 0}
    assert views("/a") == 2
    assert AnonymousTrafficCount.objects.get(path="/a").events == 2


def test_a_partly_resent_batch_counts_only_the_new_events():
    session, client = make_session(consent=NO_ANALYTICS)
    client.post(events_url(session.public_id), page_view("/a", messageId="p1"), format="json")
    batch = {"events": [page_view("/a", messageId="p1"), page_view("/a", messageId="p2")]}
    assert client.post(events_url(session.public_id), batch, format="json").json() == {
        "stored": 0,
        "duplicates": 1,
        "anonymous": 1,
    }
    assert views("/a") == 2


def test_the_same_message_id_twice_in_one_batch_counts_once():
    session, client = make_session(consent=NO_ANALYTICS)
    batch = {"events": [page_view("/a", messageId="twice"), page_view("/a", messageId="twice")]}
    assert client.post(events_url(session.public_id), batch, format="json").json()["anonymous"] == 1
    assert views("/a") == 1


def test_events_without_a_message_id_are_always_counted():
    """A server-generated id cannot recognise a resend: each such event counts."""
    session, client = make_session(consent=NO_ANALYTICS)
    for _ in range(2):
        assert client.post(events_url(session.public_id), page_view("/a"), format="json").json()["anonymous"] == 1
    assert views("/a") == 2


def test_message_ids_are_remembered_per_site():
    """Another site's identical message id is a different event."""
    one, client_one = make_session(consent=NO_ANALYTICS)
    two, client_two = make_session(consent=NO_ANALYTICS)
    assert (
        client_one.post(events_url(one.public_id), page_view("/a", messageId="x"), format="json").json()["anonymous"]
        == 1
    )
    assert (
        client_two.post(events_url(two.public_id), page_view("/a", messageId="x"), format="json").json()["anonymous"]
        == 1
    )


def test_a_message_id_is_forgotten_after_the_window(settings):
    """Only a short-lived mark is kept: once it expires the id counts again."""
    settings.ANONYMOUS_DEDUPE_SECONDS = 1
    assert anonymous_first_seen(neuron_id=1, message_ids=["w"]) == {"w"}
    assert anonymous_first_seen(neuron_id=1, message_ids=["w"]) == set()
    from django.core.cache import cache

    cache.clear()  # what the expiry does
    assert anonymous_first_seen(neuron_id=1, message_ids=["w"]) == {"w"}


def test_the_cache_holds_no_message_id(settings):
    """The mark is a keyed hash: the raw id is nowhere in the key."""
    from sessions_app.live import _seen_key

    assert "secret-message-id" not in _seen_key(7, "secret-message-id")


def test_with_redis_down_anonymous_events_are_still_counted(settings):
    """Deduplication is best-effort: an outage answers 200 and counts (once per batch)."""
    dead = dead_redis_url()
    settings.REDIS_URL = dead
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": dead,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    session, client = make_session(consent=NO_ANALYTICS)
    batch = {"events": [page_view("/a", messageId="d1"), page_view("/a", messageId="d1")]}
    response = client.post(events_url(session.public_id), batch, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"stored": 0, "duplicates": 1, "anonymous": 1}
    assert views("/a") == 1


def test_a_resent_v1_call_without_consent_is_counted_once(client, neuron):
    """Segment SDKs retry with the same messageId: /v1 counts it once."""
    body = {
        "anonymousId": "anon-v1",
        "event": "Viewed",
        "messageId": "seg-1",
        "writeKey": neuron.publishable_key,
        "context": {"page": {"path": "/seg"}, "consent": {"categoryPreferences": {"analytics": False}}},
    }
    for _ in range(2):
        assert client.post("/v1/track", body, content_type="application/json").status_code == 200
    assert AnonymousTrafficCount.objects.get(path="/seg").events == 1
