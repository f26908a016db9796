"""events_ingest: exactly once under concurrency, and generated payloads against the own API."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from sessions_app.event_input import EventIn
from sessions_app.ingestion import event_time, events_ingest
from sessions_app.models import BehaviorEvent, UserSession
from tests.helpers import needs_postgres
from tests.sessions_app.factories import UserSessionFactory
from tests.sessions_app.test_events_apis import bearer, events_url


def batch(prefix: str, size: int) -> list[EventIn]:
    return [EventIn(event_type="page_view", page_path=f"/{i}", message_id=f"{prefix}-{i}") for i in range(size)]


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_batches_are_stored_exactly_once():
    """The same batch sent by four clients at once is stored once and counted once."""
    session = UserSessionFactory()
    events = batch("dup", 50)
    barrier = threading.Barrier(4)
    results, errors = [], []

    def send() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(
                events_ingest(
                    session=UserSession.objects.get(pk=session.pk),
                    events=events,
                    sent_at=None,
                    received_at=timezone.now(),
                )
            )
        except Exception as exc:  # surfaced below with the thread's error
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sorted(r.stored for r in results) == [0, 0, 0, 50]
    assert sum(r.duplicates for r in results) == 150
    assert BehaviorEvent.objects.filter(session=session).count() == 50
    session.refresh_from_db()
    assert session.event_count == 50 and session.page_view_count == 50


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_overlapping_batches_of_different_sessions_store_each_message_once():
    """Two sessions of one site racing with overlapping message ids: each id is stored once in total."""
    first = UserSessionFactory()
    second = UserSessionFactory(neuron=first.neuron)
    barrier = threading.Barrier(2)
    stored: list[int] = []
    errors: list[Exception] = []

    def send(session: UserSession, events: list[EventIn]) -> None:
        try:
            barrier.wait(timeout=10)
            stored.append(
                events_ingest(session=session, events=events, sent_at=None, received_at=timezone.now()).stored
            )
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    overlap = batch("x", 30)
    threads = [
        threading.Thread(target=send, args=(first, overlap[:20])),
        threading.Thread(target=send, args=(second, overlap[10:])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sum(stored) == 30
    assert BehaviorEvent.objects.filter(neuron=first.neuron).count() == 30
    counted = sum(UserSession.objects.filter(pk__in=[first.pk, second.pk]).values_list("event_count", flat=True))
    assert counted == 30


def test_event_time_keeps_offsets_and_falls_back_to_receipt():
    """Skew correction is exact to the microsecond and independent of time zones."""
    now = timezone.now()
    sent = now + timedelta(hours=3)
    event = EventIn(event_type="click", timestamp=sent - timedelta(seconds=1, microseconds=5))
    assert event_time(event=event, sent_at=sent, received_at=now) == now - timedelta(seconds=1, microseconds=5)
    assert event_time(event=EventIn(event_type="click"), sent_at=sent, received_at=now) == now


@pytest.mark.django_db
def test_empty_batch_changes_nothing():
    """Ingesting nothing stores nothing and does not touch the session."""
    session = UserSessionFactory()
    before = session.last_activity_at
    result = events_ingest(session=session, events=[], sent_at=None, received_at=timezone.now())
    assert (result.stored, result.duplicates, result.anonymous) == (0, 0, 0)
    session.refresh_from_db()
    assert session.last_activity_at == before


# --- generated payloads -------------------------------------------------------

texts = st.text(max_size=40)
json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False) | texts
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4), max_leaves=12
)
timestamps = st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()) | texts
event_types = st.sampled_from(["page_view", "click", "conversion", "custom", "screen_view"]) | texts
maybe = st.one_of
events = st.fixed_dictionaries(
    {},
    optional={
        "eventType": maybe(event_types, json_values),
        "eventName": maybe(texts, json_values),
        "eventData": maybe(st.dictionaries(texts, json_values, max_size=5), json_values),
        "page": maybe(
            st.fixed_dictionaries(
                {}, optional={"url": texts, "path": maybe(texts, st.integers()), "title": texts, "extra": texts}
            ),
            json_values,
        ),
        "timestamp": maybe(timestamps, json_values),
        "messageId": maybe(st.sampled_from(["m1", "m2", "m3"]), texts, json_values),
        "colour": texts,
    },
)
payloads = maybe(
    events,
    st.fixed_dictionaries(
        {"events": maybe(st.lists(events, max_size=6), json_values)},
        optional={"sentAt": maybe(timestamps, json_values)},
    ),
    json_values,
)


@pytest.mark.django_db
@pytest.mark.parametrize("personalization", [True, False])
@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=payloads)
def test_generated_payloads_get_2xx_or_4xx_and_rows_match_what_was_accepted(personalization, payload):
    """Whatever the body, the answer is 2xx or 4xx, and stored rows equal the events reported stored.
    (On PostgreSQL a plain single event is group-committed: by the one statement without
    personalization consent, in a transaction with it.)"""
    name = f"hypothesis-{personalization}"
    token = f"{name}-token-" + "0" * 40
    session = UserSession.objects.filter(anonymous_id=name).first() or UserSessionFactory(
        anonymous_id=name, factory_token=token, consent={"analytics": True, "personalization": personalization}
    )
    client = bearer(token)
    before = BehaviorEvent.objects.count()
    counted_before = UserSession.objects.get(pk=session.pk).event_count
    response = client.post(events_url(session.public_id), payload, format="json")
    assert response.status_code < 500, response.content
    after = BehaviorEvent.objects.count()
    if response.status_code == 200:
        body = response.json()
        assert after - before == body["stored"]
        assert UserSession.objects.get(pk=session.pk).event_count - counted_before == body["stored"]
    else:
        assert 400 <= response.status_code < 500
        assert response["Content-Type"] == "application/problem+json"
        assert after == before
