"""/v1 (Segment-compatible): calls, batches, auth, limits, gzip, consent, sessionization."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import time_machine
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from privacy.crypto import identifier_hash
from sessions_app.models import AnonymousTrafficCount, BehaviorEvent, GlobalUserProfile, UserSession
from tests.conftest import DESKTOP_UA, IPHONE_UA
from tests.federation.factories import NeuronFactory
from tests.helpers import assert_problem, in_parallel, needs_postgres

pytestmark = pytest.mark.django_db

GRANTED = {"consent": {"categoryPreferences": {"Analytics": True, "Personalization": True}}}


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def post(path: str, payload, *, key: str | None = None, gzipped: bool = False, **headers):
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    if gzipped:
        body = gzip.compress(body)
        headers["HTTP_CONTENT_ENCODING"] = "gzip"
    if key is not None:
        headers["HTTP_AUTHORIZATION"] = basic(key)
    return Client(REMOTE_ADDR="203.0.113.9").post(path, body, content_type="application/json", **headers)


def track(anonymous_id: str = "anon-1", **extra) -> dict:
    return {"anonymousId": anonymous_id, "event": "Clicked Buy", "context": GRANTED, **extra}


# --- calls ------------------------------------------------------------------


def test_track_opens_a_session_enriched_from_context_and_stores_the_event(neuron):
    """A first track opens a session from context (truncated IP, UA, page, campaign) and stores the event."""
    context = {
        **GRANTED,
        "ip": "81.2.69.142",
        "userAgent": DESKTOP_UA,
        "page": {"url": "https://shop.example.com/sale?x=1", "referrer": "https://news.example.org/"},
        "campaign": {"name": "spring", "source": "newsletter", "medium": "email"},
    }
    response = post(
        "/v1/track",
        {
            "anonymousId": "anon-1",
            "event": "Clicked Buy",
            "properties": {"sku": "A"},
            "context": context,
            "messageId": "m1",
        },
        key=neuron.publishable_key,
    )
    assert response.status_code == 200, response.content
    assert response.json()["success"] is True and response.json()["stored"] == 1
    session = UserSession.objects.get()
    assert (session.neuron, session.anonymous_id) == (neuron, "anon-1")
    assert session.ip_truncated == "81.2.69.0" and session.country == "GB"
    assert session.device_type == "desktop" and session.browser == "Chrome"
    assert session.landing_page == "/sale"
    assert session.referrer == "https://news.example.org/"
    assert (session.utm_campaign, session.utm_source, session.utm_medium) == ("spring", "newsletter", "email")
    assert session.consent["analytics"] is True
    event = BehaviorEvent.objects.get()
    assert (event.event_type, event.event_name, event.properties) == ("track", "Clicked Buy", {"sku": "A"})
    assert event.session == session and event.message_id == "m1"
    session.refresh_from_db()
    assert session.event_count == 1 and session.interaction_count == 1


def test_write_key_in_the_body_authenticates(neuron):
    """Clients that cannot set headers send writeKey in the body."""
    response = post("/v1/track", {**track(), "writeKey": neuron.publishable_key})
    assert response.status_code == 200, response.content
    assert BehaviorEvent.objects.count() == 1


def test_page_and_screen_are_page_views_with_page_fields(neuron):
    """page() takes url/path/title from properties; screen() counts as a page view too."""
    page = {
        "anonymousId": "a",
        "name": "Pricing",
        "properties": {"url": "https://shop.example.com/pricing?p=2", "title": "Pricing", "referrer": "https://g.co/"},
        "context": GRANTED,
    }
    assert post("/v1/page", page, key=neuron.publishable_key).status_code == 200
    assert (
        post(
            "/v1/screen", {"anonymousId": "a", "name": "Home", "context": GRANTED}, key=neuron.publishable_key
        ).status_code
        == 200
    )
    view = BehaviorEvent.objects.get(event_type="page_view")
    assert (view.page_path, view.page_title, view.referrer, view.event_name) == (
        "/pricing",
        "Pricing",
        "https://g.co/",
        "Pricing",
    )
    assert BehaviorEvent.objects.get(event_type="screen_view").event_name == "Home"
    assert UserSession.objects.get().page_view_count == 2


def test_order_completed_counts_as_a_conversion(neuron):
    """Segment's e-commerce 'Order Completed' is a conversion for the engagement score."""
    post("/v1/track", track(event="Order Completed"), key=neuron.publishable_key)
    assert BehaviorEvent.objects.get().event_type == "conversion"
    assert UserSession.objects.get().conversion_count == 1


def test_calls_of_one_anonymous_id_share_a_session_until_the_idle_timeout(neuron):
    """Server-side sessionization: same live session while active, a new one after the idle timeout."""
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        post("/v1/track", track(), key=neuron.publishable_key)
    with time_machine.travel(start + timedelta(minutes=20), tick=False):
        post("/v1/track", track(), key=neuron.publishable_key)
    assert UserSession.objects.count() == 1
    with time_machine.travel(start + timedelta(minutes=51), tick=False):
        post("/v1/track", track(), key=neuron.publishable_key)
    sessions = list(UserSession.objects.order_by("started_at"))
    assert len(sessions) == 2
    assert {s.anonymous_id for s in sessions} == {"anon-1"}
    assert [BehaviorEvent.objects.filter(session=s).count() for s in sessions] == [2, 1]


def test_identify_attaches_the_user_and_stores_traits(neuron):
    """identify goes through the identity services: one profile per user id, traits merged."""
    post("/v1/track", track(), key=neuron.publishable_key)
    response = post(
        "/v1/identify",
        {"anonymousId": "anon-1", "userId": "user-42", "traits": {"plan": "pro"}, "context": GRANTED},
        key=neuron.publishable_key,
    )
    assert response.status_code == 200, response.content
    profile = GlobalUserProfile.objects.get(user_id_hash=identifier_hash("user-42"))
    assert profile.traits == {"plan": "pro"}
    assert UserSession.objects.get().profile == profile
    post("/v1/track", track(userId="user-42"), key=neuron.publishable_key)
    assert BehaviorEvent.objects.filter(profile=profile).count() >= 1


def test_user_id_only_calls_are_sessionized_without_storing_the_user_id(neuron):
    """A server-side call with only userId gets a session keyed by a hash, never the raw id."""
    payload = {"userId": "user-7", "event": "Renewed", "context": GRANTED}
    post("/v1/track", payload, key=neuron.publishable_key)
    post("/v1/track", payload, key=neuron.publishable_key)
    session = UserSession.objects.get()
    assert "user-7" not in session.anonymous_id and session.anonymous_id.startswith("u:")
    assert session.profile.user_id_hash == identifier_hash("user-7")
    assert BehaviorEvent.objects.filter(session=session).count() == 2


def test_alias_merges_the_anonymous_history_into_the_user(neuron):
    """alias(previousId=anonymous id, userId) makes the anonymous visitor's profile the user's."""
    post(
        "/v1/identify", {"anonymousId": "anon-1", "traits": {"seen": 1}, "context": GRANTED}, key=neuron.publishable_key
    )
    response = post(
        "/v1/alias", {"previousId": "anon-1", "userId": "user-9", "context": GRANTED}, key=neuron.publishable_key
    )
    assert response.status_code == 200, response.content
    user = GlobalUserProfile.objects.get(user_id_hash=identifier_hash("user-9"))
    session = UserSession.objects.get(anonymous_id="anon-1")
    session.profile.refresh_from_db()
    from sessions_app.identity import profile_resolve

    assert profile_resolve(session.profile) == user


def test_group_stores_group_id_and_traits_on_the_profile(neuron):
    """group() keeps every group of the profile with its traits."""
    for group_id, traits in (("acme", {"plan": "team"}), ("globex", {"seats": 3})):
        body = {"anonymousId": "a", "groupId": group_id, "traits": traits, "context": GRANTED}
        assert post("/v1/group", body, key=neuron.publishable_key).status_code == 200
    profile = UserSession.objects.get().profile
    assert profile.traits["groups"] == {"acme": {"plan": "team"}, "globex": {"seats": 3}}


@pytest.mark.parametrize("groups", ["ab", ["acme"], 5, None])
def test_group_replaces_a_groups_trait_that_is_not_an_object(neuron, groups):
    """identify() may set any `groups` trait; group() then starts the groups over instead of failing."""
    identify = {"anonymousId": "a", "traits": {"groups": groups, "plan": "free"}, "context": GRANTED}
    assert post("/v1/identify", identify, key=neuron.publishable_key).status_code == 200
    body = {"anonymousId": "a", "groupId": "acme", "traits": {"seats": 3}, "context": GRANTED}
    response = post("/v1/group", body, key=neuron.publishable_key)
    assert response.status_code == 200, response.content
    profile = UserSession.objects.get().profile
    assert profile.traits["groups"] == {"acme": {"seats": 3}} and profile.traits["plan"] == "free"


def test_batch_merges_top_level_context_and_is_idempotent_on_message_id(neuron):
    """Top-level context reaches every item; a resent batch is stored once."""
    payload = {
        "context": GRANTED,
        "sentAt": "2026-01-01T00:00:00Z",
        "batch": [
            {"type": "track", "anonymousId": "a", "event": "E1", "messageId": "1"},
            {"type": "page", "anonymousId": "a", "name": "Home", "messageId": "2"},
            {"type": "identify", "anonymousId": "b", "userId": "u-b", "traits": {"x": 1}},
            {"type": "track", "anonymousId": "b", "event": "E2", "messageId": "3"},
        ],
    }
    first = post("/v1/batch", payload, key=neuron.publishable_key)
    assert first.status_code == 200, first.content
    assert first.json()["stored"] == 3
    again = post("/v1/batch", payload, key=neuron.publishable_key)
    assert again.json()["stored"] == 0 and again.json()["duplicates"] == 3
    assert BehaviorEvent.objects.count() == 3
    assert UserSession.objects.count() == 2


def test_gzip_bodies_are_inflated(neuron):
    """SDKs that gzip by default are understood."""
    response = post("/v1/batch", {"batch": [{"type": "track", **track()}]}, key=neuron.publishable_key, gzipped=True)
    assert response.status_code == 200, response.content
    assert BehaviorEvent.objects.count() == 1


def test_clock_skew_is_corrected_from_sent_at(neuron):
    """originalTimestamp is corrected by receivedAt − sentAt, as Segment does."""
    received = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    with time_machine.travel(received, tick=False):
        post(
            "/v1/track",
            track(originalTimestamp="2026-05-01T12:00:00Z", sentAt="2026-05-01T12:00:05Z"),
            key=neuron.publishable_key,
        )
    assert BehaviorEvent.objects.get().timestamp == received - timedelta(seconds=5)


def test_a_timestamp_with_a_far_utc_offset_is_stored_as_its_utc_instant(neuron):
    """An offset beyond PostgreSQL's ±15:59 is legal ISO 8601: the instant is kept, in UTC."""
    response = post("/v1/track", track(timestamp="2026-05-01T12:00:00-17:25"), key=neuron.publishable_key)
    assert response.status_code == 200, response.content
    assert BehaviorEvent.objects.get().timestamp == datetime(2026, 5, 2, 5, 25, tzinfo=UTC)


# --- consent ----------------------------------------------------------------


def test_without_analytics_consent_events_are_only_counted_and_no_session_is_made(neuron):
    """Opt-in mode, no consent in context: anonymous aggregates only; no session, no row."""
    payload = {
        "anonymousId": "a",
        "name": "Home",
        "properties": {"path": "/home"},
        "context": {"userAgent": IPHONE_UA, "ip": "81.2.69.142"},
    }
    response = post("/v1/page", payload, key=neuron.publishable_key)
    assert response.status_code == 200
    assert response.json()["anonymous"] == 1
    assert UserSession.objects.count() == 0 and BehaviorEvent.objects.count() == 0
    count = AnonymousTrafficCount.objects.get()
    assert (count.path, count.page_views, count.device_type, count.country) == ("/home", 1, "mobile", "GB")


def test_identify_and_alias_without_consent_are_dropped(neuron):
    """Nothing that identifies a visitor is stored without analytics consent."""
    post(
        "/v1/identify",
        {"anonymousId": "a", "userId": "u", "traits": {"email": "x@example.com"}},
        key=neuron.publishable_key,
    )
    response = post("/v1/alias", {"previousId": "a", "userId": "u"}, key=neuron.publishable_key)
    assert response.json()["dropped"] == 1
    assert GlobalUserProfile.objects.count() == 0 and UserSession.objects.count() == 0


def test_consent_withdrawn_in_context_stops_storage_for_the_live_session(neuron):
    """A later call refusing analytics updates the session's consent, which deletes the events stored
    before (privacy.ledger); its events are then only counted."""
    post("/v1/track", track(), key=neuron.publishable_key)
    assert BehaviorEvent.objects.count() == 1
    refused = {"consent": {"categoryPreferences": {"analytics": False}}}
    response = post("/v1/track", track(context=refused), key=neuron.publishable_key)
    assert response.json()["anonymous"] == 1
    assert UserSession.objects.get().consent["analytics"] is False
    post("/v1/track", track(context={}), key=neuron.publishable_key)
    assert BehaviorEvent.objects.count() == 0


def test_v1_never_continues_a_session_of_the_session_api(neuron, site_client):
    """/v1 needs only the public write key and an anonymous id: it opens a session of its own rather
    than changing the consent of, or adding events to, a session only its token may touch."""
    created = site_client.post(
        "/api/sessions/create", {"consent": {"analytics": False}, "anonymousId": "victim"}, format="json"
    ).json()
    granted = {"consent": {"categoryPreferences": {"analytics": True, "marketing": True}}}
    response = post("/v1/track", track("victim", context=granted), key=neuron.publishable_key)
    assert response.json()["stored"] == 1
    api_session = UserSession.objects.get(public_id=created["sessionId"])
    assert api_session.consent["analytics"] is False and api_session.consent.get("marketing") is not True
    assert not BehaviorEvent.objects.filter(session=api_session).exists()
    v1_session = UserSession.objects.exclude(pk=api_session.pk).get(anonymous_id="victim")
    assert v1_session.channel == "v1" and api_session.channel == "api"
    assert BehaviorEvent.objects.filter(session=v1_session).count() == 1


def test_opt_out_mode_stores_without_explicit_consent(neuron, settings):
    """In opt-out mode (CCPA) analytics is allowed until refused."""
    settings.CONSENT_MODE = "opt-out"
    post("/v1/track", track(context={}), key=neuron.publishable_key)
    assert BehaviorEvent.objects.count() == 1


# --- credentials ------------------------------------------------------------


def test_missing_write_key_is_401_with_a_basic_challenge():
    """No key anywhere: 401 with WWW-Authenticate."""
    response = post("/v1/track", track())
    assert_problem(response, 401)
    assert response["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    "authorization",
    ["Basic !!!notbase64", "Bearer abc", "Basic " + base64.b64encode(b"pk_unknown:").decode(), "Basic"],
)
def test_bad_credentials_are_401(neuron, authorization):
    """Malformed or unknown credentials: 401, nothing stored."""
    assert_problem(post("/v1/track", track(), HTTP_AUTHORIZATION=authorization), 401)
    assert BehaviorEvent.objects.count() == 0


def test_inactive_site_write_key_is_401(neuron):
    """A disabled site's key opens nothing."""
    neuron.is_active = False
    neuron.save()
    assert_problem(post("/v1/track", track(), key=neuron.publishable_key), 401)


def test_sessions_of_another_site_are_never_reused(neuron):
    """The same anonymous id on two sites means two sessions, each in its own site."""
    other = NeuronFactory()
    post("/v1/track", track(), key=neuron.publishable_key)
    post("/v1/track", track(), key=other.publishable_key)
    assert UserSession.objects.filter(anonymous_id="anon-1").count() == 2
    assert set(BehaviorEvent.objects.values_list("neuron", flat=True)) == {neuron.pk, other.pk}


# --- bad input --------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/v1/track", {"event": "x", "context": GRANTED}, "userId"),
        ("/v1/track", {"anonymousId": "a"}, "event"),
        ("/v1/track", {"anonymousId": "a", "event": 5}, "event"),
        ("/v1/track", {"anonymousId": ["a"], "event": "x"}, "anonymousId"),
        ("/v1/track", {"anonymousId": "a", "event": "x", "properties": [1]}, "properties"),
        ("/v1/track", {"anonymousId": "a", "event": "x", "context": "web"}, "context"),
        ("/v1/track", {"anonymousId": "a", "event": "x", "timestamp": "noon"}, "timestamp"),
        (
            "/v1/track",
            {"anonymousId": "a", "event": "x", "context": {"consent": {"categoryPreferences": {"analytics": "yes"}}}},
            "context.consent.categoryPreferences.analytics",
        ),
        ("/v1/group", {"anonymousId": "a"}, "groupId"),
        ("/v1/alias", {"userId": "u"}, "previousId"),
        ("/v1/batch", {"batch": "x"}, "batch"),
        ("/v1/batch", {"batch": [{"type": "explode", "anonymousId": "a"}]}, "batch[0].type"),
        ("/v1/batch", {"batch": [track(), {"type": "track", "anonymousId": "a"}]}, "batch[1].event"),
        ("/v1/batch", [1, 2], "body"),
    ],
)
def test_invalid_calls_are_400_naming_the_field_and_store_nothing(neuron, path, payload, field):
    """A bad call (or any bad item of a batch) is a 400 naming the field; nothing is stored."""
    if path == "/v1/batch" and isinstance(payload, dict) and isinstance(payload.get("batch"), list):
        payload["batch"][0].setdefault("type", "track")
    body = assert_problem(post(path, payload, key=neuron.publishable_key), 400)
    assert field in body["errors"], body
    assert BehaviorEvent.objects.count() == 0 and UserSession.objects.count() == 0


def test_malformed_json_is_400(neuron):
    """Not JSON: a problem body, so SDKs do not retry forever."""
    body = assert_problem(post("/v1/track", b'{"event": ', key=neuron.publishable_key), 400)
    assert body["title"] == "Malformed request body"


def test_bad_gzip_is_400_and_other_encodings_415(neuron):
    """A corrupt gzip body is a 400; brotli is not accepted."""
    bad = post("/v1/track", b"not gzip", key=neuron.publishable_key, HTTP_CONTENT_ENCODING="gzip")
    assert_problem(bad, 400)
    assert_problem(post("/v1/track", track(), key=neuron.publishable_key, HTTP_CONTENT_ENCODING="br"), 415)


def test_call_over_32_kb_is_413(neuron):
    """A single call over Segment's 32 KB limit is refused."""
    payload = track(properties={"blob": "x" * (33 * 1024)})
    assert_problem(post("/v1/track", payload, key=neuron.publishable_key), 413)


def test_gzip_that_inflates_past_the_limit_is_413(neuron):
    """A small compressed body that inflates past the limit is refused without inflating it all."""
    payload = {"batch": [], "pad": "0" * (2 * 1024 * 1024)}
    response = post("/v1/batch", payload, key=neuron.publishable_key, gzipped=True)
    assert_problem(response, 413)


def test_batch_item_over_32_kb_is_400_naming_it(neuron):
    """Inside a batch, an oversize item is named; the rest is not stored either."""
    payload = {"batch": [{"type": "track", **track()}, {"type": "track", **track(properties={"b": "x" * 33 * 1024})}]}
    body = assert_problem(post("/v1/batch", payload, key=neuron.publishable_key), 400)
    assert "batch[1]" in body["errors"]
    assert BehaviorEvent.objects.count() == 0


def test_batch_item_nested_too_deeply_is_400_naming_it(neuron):
    """The body may nest 1,024 levels; a call inside a batch is measured by orjson, which stops at 254."""
    deep: dict = {"leaf": 1}
    for _ in range(300):
        deep = {"a": deep}
    payload = {"batch": [{"type": "track", **track()}, {"type": "track", **track(properties=deep)}]}
    body = assert_problem(post("/v1/batch", json.dumps(payload).encode(), key=neuron.publishable_key), 400)
    assert "batch[1]" in body["errors"]
    assert BehaviorEvent.objects.count() == 0


def test_batch_over_the_size_and_count_limits_is_413(neuron, settings):
    """500 KB per batch and 2,500 calls per batch, as Segment."""
    big = {"batch": [{"type": "track", **track(properties={"b": "x" * 30 * 1024})} for _ in range(20)]}
    assert_problem(post("/v1/batch", big, key=neuron.publishable_key), 413)
    settings.SEGMENT_MAX_BATCH_EVENTS = 2
    many = {"batch": [{"type": "track", **track()} for _ in range(3)]}
    assert_problem(post("/v1/batch", many, key=neuron.publishable_key), 413)


def test_get_is_405():
    """The tracking API only takes POST."""
    response = Client().get("/v1/track")
    assert_problem(response, 405)
    assert response["Allow"] == "POST"


# --- generated payloads -------------------------------------------------------


texts = st.text(max_size=30)
scalars = (
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, allow_infinity=False) | texts
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3), max_leaves=8
)
ids = st.sampled_from(["a1", "a2", "a3"]) | st.integers(0, 5) | values
contexts = st.fixed_dictionaries(
    {},
    optional={
        "consent": st.fixed_dictionaries(
            {},
            optional={
                "categoryPreferences": st.dictionaries(
                    st.sampled_from(["Analytics", "analytics", "Ads"]), values | st.booleans()
                )
            },
        )
        | values,
        "ip": st.sampled_from(["81.2.69.142", "2001:db8::1", "not-an-ip"]) | values,
        "userAgent": texts | values,
        "page": st.fixed_dictionaries({}, optional={"url": texts, "path": texts | values}) | values,
        "campaign": st.dictionaries(st.sampled_from(["name", "source"]), texts | values),
    },
)
calls = st.fixed_dictionaries(
    {"type": st.sampled_from(["track", "page", "screen", "identify", "group", "alias"]) | values},
    optional={
        "anonymousId": ids,
        "userId": ids,
        "event": texts | values,
        "name": texts | values,
        "properties": st.dictionaries(texts, values, max_size=3) | values,
        "traits": st.dictionaries(texts, values, max_size=3) | values,
        "context": contexts | values,
        "timestamp": st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()) | values,
        "messageId": st.sampled_from(["m1", "m2"]) | values,
        "groupId": ids,
        "previousId": ids,
    },
)
batches = st.fixed_dictionaries(
    {"batch": st.lists(calls, max_size=5) | values},
    optional={"context": contexts | values, "sentAt": texts | values},
)


@hsettings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=batches | values)
def test_generated_batches_get_2xx_or_4xx_and_rows_match_what_was_accepted(neuron, payload):
    """Whatever the body, /v1/batch answers 2xx or 4xx, and stored rows equal the reported count."""
    before = BehaviorEvent.objects.count()
    response = post("/v1/batch", payload, key=neuron.publishable_key)
    assert response.status_code < 500, response.content
    stored = BehaviorEvent.objects.count() - before
    if response.status_code == 200:
        assert stored == response.json()["stored"]
    else:
        assert response["Content-Type"] == "application/problem+json"
        assert stored == 0


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_first_calls_of_an_anonymous_id_open_one_session():
    """Eight calls of a new visitor at once: one session, holding all eight events."""
    neuron = NeuronFactory()
    calls = [
        lambda i=i: post("/v1/track", track("racer", messageId=f"race-{i}"), key=neuron.publishable_key).status_code
        for i in range(8)
    ]
    assert in_parallel(calls) == [200] * 8
    session = UserSession.objects.get(neuron=neuron, anonymous_id="racer")
    assert BehaviorEvent.objects.filter(session=session).count() == 8
    session.refresh_from_db()
    assert session.event_count == 8


# --- a real Segment SDK -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_segment_python_sdk_delivers_track_page_identify_and_alias(live_server, monkeypatch):
    """segment-analytics-python, unchanged, pointed at us (Basic auth, gzip, /v1/batch)."""
    from django.db import connection
    from segment.analytics import Client as SegmentClient
    from segment.analytics import request as segment_request

    # The live server answers each request in a new thread: close its database
    # connection when the request ends, or the test database cannot be dropped.
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)

    neuron = NeuronFactory()
    errors = []
    client = SegmentClient(
        write_key=neuron.publishable_key,
        host=live_server.url,
        gzip=True,
        sync_mode=True,
        max_retries=0,
        on_error=lambda error, items: errors.append(error),
    )
    context = {"consent": {"categoryPreferences": {"Analytics": True}}}
    client.page(anonymous_id="sdk-anon", name="Home", properties={"url": "https://x.example/home"}, context=context)
    client.track(anonymous_id="sdk-anon", event="Signed Up", properties={"plan": "pro"}, context=context)
    client.identify(anonymous_id="sdk-anon", user_id="sdk-user", traits={"plan": "pro"}, context=context)
    client.alias(previous_id="sdk-anon", user_id="sdk-user-2", context=context)
    client.flush()
    segment_request._session.close()  # no keep-alive socket left for the server's shutdown
    assert not errors, errors
    assert sorted(BehaviorEvent.objects.values_list("event_type", flat=True)) == ["page_view", "track"]
    assert BehaviorEvent.objects.get(event_type="page_view").page_path == "/home"
    assert GlobalUserProfile.objects.filter(user_id_hash=identifier_hash("sdk-user")).exists()
    assert GlobalUserProfile.objects.filter(user_id_hash=identifier_hash("sdk-user-2")).exists()
    assert GlobalUserProfile.objects.get(user_id_hash=identifier_hash("sdk-user")).traits == {"plan": "pro"}


def test_openapi_documents_the_segment_endpoints(db, settings):
    """/v1 is in the published schema: each call with its answers, Basic auth with the write key."""
    spec = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for call in ("track", "page", "screen", "identify", "group", "alias", "batch"):
        operation = spec["paths"][f"/v1/{call}"]["post"]
        assert {"200", "400", "401", "413", "415"} <= set(operation["responses"]), call
        assert {"writeKey": []} in operation["security"]
    assert spec["components"]["securitySchemes"]["writeKey"] == {
        "type": "http",
        "scheme": "basic",
        "description": spec["components"]["securitySchemes"]["writeKey"]["description"],
    }
    batch = spec["paths"]["/v1/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert batch["properties"]["batch"]["maxItems"] == settings.SEGMENT_MAX_BATCH_EVENTS
    track = spec["paths"]["/v1/track"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert track["required"] == ["event"]
    assert track["anyOf"] == [{"required": ["userId"]}, {"required": ["anonymousId"]}]
