"""Live counters: what ingestion records, what the dashboard reads, and Redis outages."""

from __future__ import annotations

import os
import socket
import time
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from sessions_app import live
from sessions_app.live import (
    LiveRecord,
    live_flush,
    live_record_events,
    live_record_many,
    live_reset_backoff,
    live_snapshot,
)
from sessions_app.models import BehaviorEvent
from tests.sessions_app.factories import UserSessionFactory
from tests.sessions_app.test_events_apis import bearer, events_url, page_view


@pytest.fixture(autouse=True)
def _fresh_backoff():
    live_reset_backoff()
    yield
    live_reset_backoff()


def dead_redis_url() -> str:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def test_recorded_events_show_in_the_snapshot_of_their_neuron_and_of_all():
    """Counts by type, page views, conversions, anonymous counts and active sessions add up."""
    live_record_events(neuron_id=1, event_types={"page_view": 3, "click": 2}, session_key="s1")
    live_record_events(neuron_id=1, event_types={"conversion": 1}, session_key="s2")
    live_record_events(neuron_id=1, event_types={"page_view": 1}, session_key="s1")
    live_record_events(neuron_id=2, event_types={"click": 4}, session_key="s3", anonymous=0)
    live_record_events(neuron_id=2, event_types={}, anonymous=5)

    one = live_snapshot(neuron_id=1)
    assert one["available"] is True
    assert (one["events"], one["pageViews"], one["conversions"], one["anonymous"]) == (7, 4, 1, 0)
    assert one["byType"] == {"page_view": 4, "click": 2, "conversion": 1}
    assert one["activeSessions"] == 2
    assert one["perMinute"][-1]["events"] == 7
    assert len(one["perMinute"]) == 30

    everything = live_snapshot()
    assert (everything["events"], everything["anonymous"], everything["activeSessions"]) == (11, 5, 3)


def test_records_published_together_add_up_in_one_round_trip(monkeypatch):
    """A group commit's records go in one pipeline (or one update of the local cache), with
    the totals of one call each; a record with bad increments is left out, not the others."""
    published = []
    real_redis, real_local = live._redis, live._local_record

    def redis_spy():
        published.append("redis")
        return real_redis()

    def local_spy(*args):
        published.append("local")
        return real_local(*args)

    monkeypatch.setattr(live, "_redis", redis_spy)
    monkeypatch.setattr(live, "_local_record", local_spy)
    live_record_events(neuron_id=1, event_types={"page_view": 1}, session_key="s3")
    live_record_many(
        [
            LiveRecord(neuron_id=1, event_types={"page_view": 2}, session_key="s1"),
            LiveRecord(neuron_id=1, event_types={"click": "many"}, session_key="s9"),  # type: ignore[dict-item]
            LiveRecord(neuron_id=1, event_types={"conversion": 1}, session_key="s2"),
            LiveRecord(neuron_id=1, event_types={"page_view": 1}, session_key="s1"),
            LiveRecord(neuron_id=2, event_types={}, anonymous=3),
        ]
    )
    assert published == []  # summed in the process until the next publication
    live_flush()
    assert len(published) == 1
    one = live_snapshot(neuron_id=1)
    assert (one["events"], one["pageViews"], one["conversions"], one["activeSessions"]) == (5, 4, 1, 3)
    everything = live_snapshot()
    assert (everything["events"], everything["anonymous"], everything["activeSessions"]) == (5, 3, 3)


def stored_counters(neuron_id: int, at) -> dict[str, int]:
    """The counters of `at`'s minute as the cache holds them, read without publishing anything."""
    key = live._keys(neuron_id, live._minute(at))[0]
    if settings.REDIS_URL:
        return live._decode(live._redis().hgetall(key))
    return dict(cache.get(key) or {})


def test_the_timer_publishes_pending_increments_without_a_reader(settings):
    """Nobody reads and nobody flushes: the timer still publishes within the interval, once."""
    settings.LIVE_COUNTER_FLUSH_SECONDS = 0.05
    at = timezone.now()
    live_record_events(neuron_id=7, event_types={"click": 2}, session_key="s1", at=at)
    live_record_events(neuron_id=7, event_types={"page_view": 1}, session_key="s2", at=at)
    deadline = time.monotonic() + 5
    while stored_counters(7, at).get("events") != 3:
        assert time.monotonic() < deadline, "the pending increments were never published"
        time.sleep(0.02)
    assert stored_counters(7, at) == {"events": 3, "type:click": 2, "type:page_view": 1, "pageViews": 1}
    time.sleep(0.2)  # a second publication would double them
    assert stored_counters(7, at)["events"] == 3
    live_record_events(neuron_id=7, event_types={"click": 1}, at=at)  # the next increment starts a new timer
    deadline = time.monotonic() + 5
    while stored_counters(7, at).get("events") != 4:
        assert time.monotonic() < deadline, "the second interval's increments were never published"
        time.sleep(0.02)


def test_with_no_interval_every_call_publishes_at_once(settings):
    settings.LIVE_COUNTER_FLUSH_SECONDS = 0
    at = timezone.now()
    live_record_events(neuron_id=8, event_types={"click": 1}, at=at)
    assert stored_counters(8, at) == {"events": 1, "type:click": 1}


def test_pending_increments_of_several_minutes_keep_their_minutes():
    """Increments recorded for different minutes are published to each minute's counters."""
    now = timezone.now()
    live_record_events(neuron_id=9, event_types={"click": 1}, at=now - timedelta(minutes=2))
    live_record_events(neuron_id=9, event_types={"click": 2}, at=now)
    snap = live_snapshot(neuron_id=9, window_minutes=1, series_minutes=3)
    assert [m["events"] for m in snap["perMinute"]] == [1, 0, 2]
    assert snap["events"] == 2


def test_snapshot_of_a_quiet_neuron_is_all_zeros():
    """No traffic: zeros, an empty breakdown, and a full series of empty minutes."""
    snap = live_snapshot(neuron_id=99, window_minutes=1, series_minutes=3)
    assert (snap["events"], snap["activeSessions"], snap["byType"]) == (0, 0, {})
    assert [m["events"] for m in snap["perMinute"]] == [0, 0, 0]


@pytest.mark.django_db
def test_ingested_events_reach_the_live_counters_after_commit(django_capture_on_commit_callbacks):
    """A stored batch is counted once its transaction commits; a duplicate resend adds nothing."""
    session = UserSessionFactory(factory_token="live-token-" + "0" * 40)
    client = bearer("live-token-" + "0" * 40)
    batch = {"events": [page_view(messageId="a"), {"eventType": "click", "messageId": "b"}]}
    with django_capture_on_commit_callbacks(execute=True):
        client.post(events_url(session.public_id), batch, format="json")
    with django_capture_on_commit_callbacks(execute=True):
        client.post(events_url(session.public_id), batch, format="json")
    snap = live_snapshot(neuron_id=session.neuron_id)
    assert (snap["events"], snap["pageViews"], snap["activeSessions"]) == (2, 1, 1)


@pytest.mark.django_db
def test_anonymous_counts_reach_the_live_counters_without_a_session(django_capture_on_commit_callbacks):
    """Without analytics consent the live counters see a count, not a visitor."""
    session = UserSessionFactory(factory_token="anon-token-" + "0" * 40, consent={"analytics": False})
    with django_capture_on_commit_callbacks(execute=True):
        bearer("anon-token-" + "0" * 40).post(events_url(session.public_id), page_view(), format="json")
    snap = live_snapshot(neuron_id=session.neuron_id)
    assert (snap["events"], snap["anonymous"], snap["activeSessions"]) == (0, 1, 0)


@pytest.mark.django_db
def test_ingestion_with_redis_down_stores_every_event_and_answers_200(settings, django_capture_on_commit_callbacks):
    """Redis unreachable: the request succeeds, the events are committed, live counters are skipped."""
    dead = dead_redis_url()
    settings.REDIS_URL = dead
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": dead,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    session = UserSessionFactory(factory_token="down-token-" + "0" * 40)
    client = bearer("down-token-" + "0" * 40)
    for i in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                events_url(session.public_id),
                {"events": [page_view(messageId=f"{i}-{j}") for j in range(10)]},
                format="json",
            )
        assert response.status_code == 200, response.content
        assert response.json()["stored"] == 10
    assert BehaviorEvent.objects.filter(session=session).count() == 30
    session.refresh_from_db()
    assert session.event_count == 30
    assert live_snapshot(neuron_id=session.neuron_id)["available"] is False


def test_after_a_failure_redis_is_not_tried_again_during_the_backoff(settings, monkeypatch):
    """One failed round trip per backoff period, not one per request."""
    settings.REDIS_URL = dead_redis_url()
    settings.LIVE_COUNTER_BACKOFF_SECONDS = 60
    attempts = []
    real = live._redis

    def counting():
        attempts.append(1)
        return real()

    monkeypatch.setattr(live, "_redis", counting)
    for _ in range(5):
        live_record_events(neuron_id=1, event_types={"click": 1}, session_key=str(uuid.uuid4()))
        live_flush()
    assert len(attempts) == 1
    live_reset_backoff()
    live_record_events(neuron_id=1, event_types={"click": 1})
    live_flush()
    assert len(attempts) == 2


def test_live_record_events_never_raises_on_bad_input():
    """Even a broken call is swallowed, and it does not pass for a cache outage."""
    live_record_events(neuron_id=1, event_types={"click": "many"})  # type: ignore[dict-item]
    live_record_events(neuron_id=1, event_types={"click": 1})
    assert live_snapshot(neuron_id=1)["events"] == 1


def test_a_forked_process_does_not_publish_its_parents_pending_increments():
    """A server forks its workers: each child starts with nothing pending and no timer, and the
    parent keeps what it recorded."""
    live_record_events(neuron_id=11, event_types={"click": 1})
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        os._exit(0 if live._PENDING.take() == {} else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert live_snapshot(neuron_id=11)["events"] == 1
