"""POST /api/sessions/{id}/events: success, bad input, credentials, consent, grace window."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from sessions_app.models import AnonymousTrafficCount, BehaviorEvent, UserSession
from sessions_app.services import session_end
from tests.helpers import assert_problem, bearer
from tests.sessions_app.factories import GlobalUserProfileFactory, UserSessionFactory

pytestmark = pytest.mark.django_db


def events_url(session_id) -> str:
    return f"/api/sessions/{session_id}/events"


def make_session(**kwargs):
    token = uuid.uuid4().hex + uuid.uuid4().hex
    session = UserSessionFactory(factory_token=token, **kwargs)
    return session, bearer(token)


def page_view(path: str = "/pricing", **extra) -> dict:
    return {"eventType": "page_view", "page": {"url": f"https://shop.example.com{path}?q=1", "title": "T"}, **extra}


# --- success ----------------------------------------------------------------


def test_single_event_is_stored_with_session_and_page_fields():
    """One event is stored against its session, neuron, profile and anonymous id."""
    profile = GlobalUserProfileFactory()
    session, client = make_session(neuron=profile.neuron, profile=profile)
    response = client.post(
        events_url(session.public_id),
        {
            "eventType": "click",
            "eventName": "Add to cart",
            "eventData": {"sku": "A-1", "price": 9.5, "tags": ["x"]},
            "page": {"url": "https://shop.example.com/p/a-1?ref=x", "title": "A-1", "referrer": "https://g.co/"},
            "messageId": "m-1",
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"stored": 1, "duplicates": 0, "anonymous": 0}
    event = BehaviorEvent.objects.get()
    assert (event.session, event.neuron, event.profile) == (session, session.neuron, profile)
    assert event.anonymous_id == session.anonymous_id
    assert event.event_type == "click" and event.event_name == "Add to cart"
    assert event.properties == {"sku": "A-1", "price": 9.5, "tags": ["x"]}
    assert event.page_path == "/p/a-1" and event.page_url.endswith("?ref=x")
    assert event.page_title == "A-1" and event.referrer == "https://g.co/"
    assert event.message_id == "m-1"


def test_batch_updates_counters_engagement_and_activity_in_one_go():
    """Counters by kind, last activity, expiry and the engagement score follow a stored batch."""
    started = timezone.now() - timedelta(minutes=10)
    session, client = make_session(started_at=started)
    events = [page_view(f"/p/{i}") for i in range(10)]
    events += [{"eventType": "click"} for _ in range(20)]
    events += [{"eventType": "conversion", "eventName": "purchase"}]
    response = client.post(events_url(session.public_id), {"events": events}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"stored": 31, "duplicates": 0, "anonymous": 0}
    session.refresh_from_db()
    assert session.event_count == 31
    assert session.page_view_count == 10
    assert session.interaction_count == 20
    assert session.conversion_count == 1
    assert session.engagement_score == pytest.approx(100.0)
    assert session.last_activity_at > started + timedelta(minutes=9)
    assert session.expires_at > timezone.now() + timedelta(minutes=29)


def test_resent_batch_is_stored_once_and_reported_as_duplicates():
    """A retried batch (same message ids) stores nothing new and leaves the counters alone."""
    session, client = make_session()
    batch = {"events": [page_view(messageId=f"m-{i}") for i in range(5)]}
    assert client.post(events_url(session.public_id), batch, format="json").json()["stored"] == 5
    again = client.post(events_url(session.public_id), batch, format="json")
    assert again.status_code == 200
    assert again.json() == {"stored": 0, "duplicates": 5, "anonymous": 0}
    assert BehaviorEvent.objects.count() == 5
    session.refresh_from_db()
    assert session.event_count == 5 and session.page_view_count == 5


def test_partly_known_batch_stores_only_the_new_events():
    """A batch mixing known and new message ids stores the new ones and counts the rest as duplicates."""
    session, client = make_session()
    client.post(events_url(session.public_id), {"events": [page_view(messageId="a")]}, format="json")
    response = client.post(
        events_url(session.public_id),
        {"events": [page_view(messageId="a"), page_view(messageId="b"), page_view(messageId="b")]},
        format="json",
    )
    assert response.json() == {"stored": 1, "duplicates": 2, "anonymous": 0}
    assert sorted(BehaviorEvent.objects.values_list("message_id", flat=True)) == ["a", "b"]


def test_message_id_is_unique_per_neuron_not_globally():
    """Two sites may use the same message id; each stores its own event."""
    a, client_a = make_session()
    b, client_b = make_session()
    for session, client in ((a, client_a), (b, client_b)):
        response = client.post(events_url(session.public_id), page_view(messageId="same"), format="json")
        assert response.json()["stored"] == 1
    assert BehaviorEvent.objects.filter(message_id="same").count() == 2


def test_events_without_message_id_get_one_each():
    """The server generates distinct message ids for events sent without one."""
    session, client = make_session()
    response = client.post(events_url(session.public_id), {"events": [page_view(), page_view()]}, format="json")
    assert response.json()["stored"] == 2
    ids = list(BehaviorEvent.objects.values_list("message_id", flat=True))
    assert len(set(ids)) == 2 and all(uuid.UUID(i) for i in ids)


def test_event_times_are_corrected_for_client_clock_skew():
    """timestamp = receivedAt − (sentAt − timestamp): a client clock 1 h fast is corrected."""
    session, client = make_session()
    received = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    with time_machine.travel(received, tick=False):
        session.last_activity_at = session.started_at = received - timedelta(minutes=1)
        session.expires_at = received + timedelta(minutes=29)
        session.save()
        response = client.post(
            events_url(session.public_id),
            {
                "sentAt": "2026-03-01T13:00:00Z",
                "events": [
                    {"eventType": "click", "timestamp": "2026-03-01T12:59:30.000Z", "messageId": "a"},
                    {"eventType": "click", "timestamp": "2026-03-01T14:59:30+02:00", "messageId": "b"},
                ],
            },
            format="json",
        )
    assert response.status_code == 200, response.content
    times = dict(BehaviorEvent.objects.values_list("message_id", "timestamp"))
    assert times["a"] == received - timedelta(seconds=30)
    assert times["b"] == received - timedelta(seconds=30)
    assert BehaviorEvent.objects.get(message_id="a").received_at == received


def test_without_sent_at_the_client_time_is_kept_and_without_timestamp_the_receipt_time_is_used():
    """No sentAt: no correction. No timestamp: the event happened when it arrived."""
    session, client = make_session()
    response = client.post(
        events_url(session.public_id),
        {"events": [{"eventType": "click", "timestamp": "2026-01-02T03:04:05Z", "messageId": "a"}, page_view()]},
        format="json",
    )
    assert response.status_code == 200
    assert BehaviorEvent.objects.get(message_id="a").timestamp == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    other = BehaviorEvent.objects.exclude(message_id="a").get()
    assert other.timestamp == other.received_at


def test_beacon_sent_as_text_plain_is_accepted():
    """navigator.sendBeacon posts JSON as text/plain; it is parsed like JSON."""
    session, client = make_session()
    response = client.post(
        events_url(session.public_id), orjson.dumps(page_view()), content_type="text/plain;charset=UTF-8"
    )
    assert response.status_code == 200, response.content
    assert BehaviorEvent.objects.count() == 1


def test_query_count_does_not_grow_with_batch_size(django_assert_num_queries):
    """Authentication taking the session lock, one INSERT and one UPDATE (one statement on
    PostgreSQL), and the interest vector's read and write: the same queries for 1 or 500 events."""
    session, client = make_session()
    # Warm up: the first batch also reads the site's category mapping and creates the vector row.
    client.post(events_url(session.public_id), page_view("/warm"), format="json")
    expected = 4 if connection.vendor == "postgresql" else 5
    counts = []
    for size in (1, 500):
        batch = {"events": [page_view(f"/p{i}") for i in range(size)]}
        with CaptureQueriesContext(connection) as ctx:
            assert client.post(events_url(session.public_id), batch, format="json").status_code == 200
        counts.append(len([q for q in ctx.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]))
    assert counts[0] == counts[1] == expected
    # Plus the request's SAVEPOINT/RELEASE: the test itself runs inside a transaction.
    with django_assert_num_queries(expected + 2):
        client.post(events_url(session.public_id), {"events": [page_view(f"/x{i}") for i in range(100)]}, format="json")


def test_a_batch_with_duplicates_counts_only_what_was_stored():
    """Counters follow the rows really inserted when some message ids were already taken."""
    session, client = make_session()
    first = {"events": [page_view("/a", messageId="m1"), {"eventType": "click", "messageId": "m2"}]}
    assert client.post(events_url(session.public_id), first, format="json").json()["stored"] == 2
    again = {
        "events": [
            page_view("/a", messageId="m1"),
            page_view("/b", messageId="m3"),
            {"eventType": "click", "messageId": "m4"},
        ]
    }
    body = client.post(events_url(session.public_id), again, format="json").json()
    assert (body["stored"], body["duplicates"]) == (2, 1)
    session.refresh_from_db()
    assert BehaviorEvent.objects.filter(session=session).count() == 4
    assert (session.event_count, session.page_view_count, session.interaction_count) == (4, 2, 2)


def test_an_all_duplicate_batch_still_counts_as_activity():
    """A resent batch stores nothing, but a live session's last activity moves on."""
    session, client = make_session()
    batch = {"events": [page_view("/a", messageId="d1")]}
    client.post(events_url(session.public_id), batch, format="json")
    before = timezone.now() - timedelta(minutes=1)
    UserSession.objects.filter(pk=session.pk).update(last_activity_at=before)
    body = client.post(events_url(session.public_id), batch, format="json").json()
    assert (body["stored"], body["duplicates"]) == (0, 1)
    session.refresh_from_db()
    assert session.event_count == 1
    assert session.last_activity_at > before


def test_a_rejected_batch_leaves_the_session_untouched():
    """A 400 rolls back the request's transaction (which took the session lock): no counters move."""
    session, client = make_session()
    bad = {"events": [page_view("/a"), {"eventType": "click", "eventData": [1]}]}
    assert client.post(events_url(session.public_id), bad, format="json").status_code == 400
    session.refresh_from_db()
    assert session.event_count == 0 and not BehaviorEvent.objects.exists()


# --- bad input --------------------------------------------------------------


def test_invalid_event_in_a_batch_rejects_the_batch_naming_index_and_field():
    """One bad event: 400 naming events[i].field for every error, and nothing is stored."""
    session, client = make_session()
    response = client.post(
        events_url(session.public_id),
        {
            "events": [
                page_view(),
                {"eventType": "click", "eventData": ["not", "an", "object"]},
                page_view(),
                {"eventType": 7, "timestamp": "yesterday", "colour": "red"},
            ]
        },
        format="json",
    )
    body = assert_problem(response, 400)
    assert set(body["errors"]) == {
        "events[1].eventData",
        "events[3].eventType",
        "events[3].timestamp",
        "events[3].colour",
    }
    assert BehaviorEvent.objects.count() == 0
    session.refresh_from_db()
    assert session.event_count == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "eventType"),
        ({"eventType": ""}, "eventType"),
        ({"eventType": "Page View"}, "eventType"),
        ({"eventType": "x" * 33}, "eventType"),
        ({"eventType": "click", "eventName": 5}, "eventName"),
        ({"eventType": "click", "eventName": "n" * 201}, "eventName"),
        ({"eventType": "click", "eventData": "text"}, "eventData"),
        ({"eventType": "click", "eventData": {"big": "x" * 33 * 1024}}, "eventData"),
        ({"eventType": "click", "eventData": {"nul": "a\u0000b"}}, "eventData"),
        ({"eventType": "click", "page": "/home"}, "page"),
        ({"eventType": "click", "page": {"path": 1}}, "page.path"),
        ({"eventType": "click", "page": {"host": "x"}}, "page.host"),
        ({"eventType": "click", "timestamp": "01/02/2026"}, "timestamp"),
        ({"eventType": "click", "timestamp": 1735689600}, "timestamp"),
        ({"eventType": "click", "messageId": ""}, "messageId"),
        ({"eventType": "click", "messageId": "m" * 129}, "messageId"),
        ({"eventType": "click", "sentAt": "soon"}, "sentAt"),
        ({"events": "nope"}, "events"),
        ({"events": []}, "events"),
        ({"events": [1]}, "events[0]"),
        ({"events": [], "extra": 1}, "extra"),
    ],
)
def test_bad_event_input_is_400_naming_the_field(payload, field):
    """Wrong types, sizes, formats and unknown fields are named in the problem's errors."""
    session, client = make_session()
    body = assert_problem(client.post(events_url(session.public_id), payload, format="json"), 400)
    assert field in body["errors"], body
    assert BehaviorEvent.objects.count() == 0


def test_timestamp_that_overflows_after_skew_correction_is_400():
    """A correction that leaves the calendar is a named 400, not a 500."""
    session, client = make_session()
    response = client.post(
        events_url(session.public_id),
        {"eventType": "click", "timestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-01-01T00:00:00Z"},
        format="json",
    )
    assert "timestamp" in assert_problem(response, 400)["errors"]


@pytest.mark.parametrize("batch", [False, True])
def test_a_utc_offset_beyond_what_postgresql_holds_is_stored_as_its_utc_instant(batch):
    """ISO 8601 allows offsets up to ±23:59, PostgreSQL only ±15:59: the instant is kept, in UTC."""
    session, client = make_session()
    event = {"eventType": "click", "timestamp": "2026-11-29T12:00:00-17:25", "messageId": "far-west"}
    response = client.post(events_url(session.public_id), {"events": [event]} if batch else event, format="json")
    assert response.status_code == 200, response.content
    assert BehaviorEvent.objects.get().timestamp == datetime(2026, 11, 30, 5, 25, tzinfo=UTC)


def test_a_timestamp_that_leaves_the_calendar_in_utc_is_400():
    """0001-01-01 at +05:00 is in year 0 in UTC: a named 400, not a row that cannot be read back."""
    session, client = make_session()
    response = client.post(
        events_url(session.public_id), {"eventType": "click", "timestamp": "0001-01-01T00:30:00+05:00"}, format="json"
    )
    assert "timestamp" in assert_problem(response, 400)["errors"]
    assert BehaviorEvent.objects.count() == 0


def test_event_data_may_hold_the_text_of_an_escape_but_not_a_nul_character():
    """A NUL character is refused (jsonb cannot hold it); the six characters `\\u0000` are just text."""
    session, client = make_session()
    url = events_url(session.public_id)
    response = client.post(url, {"eventType": "click", "eventData": {"x": "a\u0000b"}}, format="json")
    assert "eventData" in assert_problem(response, 400)["errors"]
    response = client.post(url, {"eventType": "click", "eventData": {"x": "\\u0000"}}, format="json")
    assert response.status_code == 200, response.content
    assert BehaviorEvent.objects.get().properties == {"x": "\\u0000"}


def test_malformed_json_is_400_and_stores_nothing():
    """A body that is not JSON is a problem-details 400."""
    session, client = make_session()
    response = client.post(events_url(session.public_id), b'{"eventType": "click"', content_type="application/json")
    assert assert_problem(response, 400)["title"] == "Malformed request body"
    assert BehaviorEvent.objects.count() == 0


def test_body_that_is_not_an_object_is_400():
    """A JSON list or scalar at the top level is refused."""
    session, client = make_session()
    response = client.post(events_url(session.public_id), [page_view()], format="json")
    assert "body" in assert_problem(response, 400)["errors"]


def test_more_events_than_the_batch_limit_is_413(settings):
    """Over EVENTS_MAX_BATCH events the whole batch is refused."""
    settings.EVENTS_MAX_BATCH = 3
    session, client = make_session()
    response = client.post(events_url(session.public_id), {"events": [page_view()] * 4}, format="json")
    assert_problem(response, 413)
    assert BehaviorEvent.objects.count() == 0


def test_oversized_body_is_413(settings):
    """A body over EVENTS_MAX_BODY_BYTES is refused before parsing."""
    settings.EVENTS_MAX_BODY_BYTES = 2048
    session, client = make_session()
    payload = {"events": [{"eventType": "click", "eventData": {"x": "y" * 500}} for _ in range(5)]}
    assert_problem(client.post(events_url(session.public_id), payload, format="json"), 413)
    assert BehaviorEvent.objects.count() == 0


def test_unsupported_media_type_is_415():
    """Form posts are not events."""
    session, client = make_session()
    response = client.post(events_url(session.public_id), {"eventType": "click"})
    assert_problem(response, 415)


# --- credentials ------------------------------------------------------------


def test_missing_token_is_401():
    """No bearer token: 401."""
    session, _ = make_session()
    assert_problem(APIClient().post(events_url(session.public_id), page_view(), format="json"), 401)


def test_unknown_token_is_401():
    """A token that opens no session: 401."""
    session, _ = make_session()
    assert_problem(bearer("nope" * 10).post(events_url(session.public_id), page_view(), format="json"), 401)


def test_token_of_another_session_is_404_and_stores_nothing():
    """A token opens only its own session; another session's id looks like a missing one."""
    session, client = make_session()
    other, _ = make_session()
    assert_problem(client.post(events_url(other.public_id), page_view(), format="json"), 404)
    assert_problem(client.post(events_url(uuid.uuid4()), page_view(), format="json"), 404)
    assert BehaviorEvent.objects.count() == 0


def test_site_key_alone_does_not_open_the_events_endpoint(site_client, neuron):
    """The publishable key creates sessions; it does not write events into one."""
    session = UserSessionFactory(neuron=neuron)
    assert_problem(site_client.post(events_url(session.public_id), page_view(), format="json"), 401)


# --- consent ----------------------------------------------------------------


def test_events_without_analytics_consent_are_only_counted_anonymously():
    """No analytics consent: no event row, no session counter; anonymous aggregates grow."""
    session, client = make_session(consent={"analytics": False, "personalization": True}, country="FR")
    response = client.post(
        events_url(session.public_id),
        {"events": [page_view("/a"), page_view("/a"), page_view("/b"), {"eventType": "click"}]},
        format="json",
    )
    assert response.status_code == 200
    assert response.json() == {"stored": 0, "duplicates": 0, "anonymous": 4}
    assert BehaviorEvent.objects.count() == 0
    session.refresh_from_db()
    assert session.event_count == 0 and session.page_view_count == 0 and session.engagement_score == 0
    counts = {
        c.path: (c.page_views, c.events, c.device_type, c.country, c.day) for c in AnonymousTrafficCount.objects.all()
    }
    today = timezone.now().date()
    assert counts == {
        "/a": (2, 2, "desktop", "FR", today),
        "/b": (1, 1, "desktop", "FR", today),
        "": (0, 1, "desktop", "FR", today),
    }
    client.post(events_url(session.public_id), page_view("/a"), format="json")
    assert AnonymousTrafficCount.objects.get(path="/a").page_views == 3


def test_consent_granted_later_stores_events_from_then_on(live_session):
    """After the visitor grants analytics consent, events are stored."""
    client, body = live_session
    client.put(f"/api/sessions/{body['sessionId']}", {"consent": {"analytics": False}}, format="json")
    assert client.post(events_url(body["sessionId"]), page_view(), format="json").json()["anonymous"] == 1
    client.put(f"/api/sessions/{body['sessionId']}", {"consent": {"analytics": True}}, format="json")
    assert client.post(events_url(body["sessionId"]), page_view(), format="json").json()["stored"] == 1
    assert BehaviorEvent.objects.count() == 1


# --- grace window -----------------------------------------------------------


def test_events_shortly_after_the_end_are_accepted_without_reopening_the_session():
    """The unload beacon lands after /end: accepted within the grace period; the session stays ended."""
    session, client = make_session()
    session_end(session=session)
    with time_machine.travel(timezone.now() + timedelta(minutes=4)):
        response = client.post(events_url(session.public_id), page_view(), format="json")
    assert response.status_code == 200, response.content
    session.refresh_from_db()
    assert session.event_count == 1 and session.ended_at is not None
    assert session.expires_at == session.ended_at


def test_events_after_the_grace_period_are_409_and_not_stored():
    """Past the grace period the client gets a 409 telling it to restore and resend."""
    session, client = make_session()
    session_end(session=session)
    with time_machine.travel(timezone.now() + timedelta(minutes=6)):
        response = client.post(events_url(session.public_id), page_view(), format="json")
    body = assert_problem(response, 409)
    assert "sessionEndedAt" in body
    assert BehaviorEvent.objects.count() == 0


def test_idle_expired_session_counts_from_its_expiry_for_the_grace_window(settings):
    """A session past its idle timeout but not yet swept ends at its expiry time."""
    settings.EVENTS_GRACE_PERIOD = timedelta(minutes=5)
    start = timezone.now() - timedelta(hours=1)
    session, client = make_session(started_at=start, last_activity_at=start)
    expires = session.expires_at
    with time_machine.travel(expires + timedelta(minutes=2)):
        assert client.post(events_url(session.public_id), page_view(), format="json").status_code == 200
    session.refresh_from_db()
    assert session.expires_at == expires  # not extended: the sweep still ends it
    with time_machine.travel(expires + timedelta(minutes=7)):
        assert_problem(client.post(events_url(session.public_id), page_view(), format="json"), 409)


def test_created_session_takes_events_end_to_end(live_session):
    """A session made through /create takes events with its token."""
    client, body = live_session
    response = client.post(events_url(body["sessionId"]), {"events": [page_view(), page_view("/b")]}, format="json")
    assert response.json()["stored"] == 2
    assert UserSession.objects.get(public_id=body["sessionId"]).page_view_count == 2
