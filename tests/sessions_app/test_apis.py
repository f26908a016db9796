"""Session lifecycle API: success, bad input, credentials, consent."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.utils import timezone

from sessions_app.models import DeviceFingerprint, GlobalUserProfile, UserSession
from tests.conftest import DESKTOP_UA
from tests.helpers import assert_problem, bearer
from tests.sessions_app.factories import UserSessionFactory

pytestmark = pytest.mark.django_db

CREATE = "/api/sessions/create"


# --- create -----------------------------------------------------------------


def test_create_returns_session_token_and_enriched_metadata(site_client, neuron):
    """A new session comes back with a token, an anonymous id and parsed request metadata."""
    response = site_client.post(
        CREATE,
        {
            "consent": {"analytics": True},
            "referrer": "https://news.example.org/story",
            "landingPage": "/pricing",
            "utm": {"source": "newsletter", "campaign": "spring"},
        },
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {
        "sessionId",
        "token",
        "anonymousId",
        "expiresAt",
        "idleTimeoutSeconds",
        "restored",
        "consent",
    }
    assert body["restored"] is False
    assert body["idleTimeoutSeconds"] == 1800
    assert len(body["token"]) >= 32
    assert body["consent"]["analytics"] is True and body["consent"]["marketing"] is False
    assert set(body["consent"]) == {"analytics", "personalization", "marketing", "fingerprinting", "saleSharing"}

    session = UserSession.objects.get(public_id=body["sessionId"])
    assert body["expiresAt"] == session.expires_at.isoformat().replace("+00:00", "Z")
    assert session.neuron == neuron
    assert session.device_type == "mobile"
    assert session.browser == "Mobile Safari"
    assert session.os == "iOS"
    assert session.country == "GB"
    assert session.ip_truncated == "81.2.69.0"
    assert session.utm_source == "newsletter" and session.utm_campaign == "spring"
    assert session.landing_page == "/pricing"


def test_token_is_stored_only_as_a_hash(site_client):
    """The raw token appears in no column of the sessions table."""
    body = site_client.post(CREATE, {}, format="json").json()
    session = UserSession.objects.get(public_id=body["sessionId"])
    assert session.token_hash == hashlib.sha256(body["token"].encode()).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM user_sessions")
        rows = cursor.fetchall()
    assert all(body["token"] not in str(value) for row in rows for value in row)


def test_client_anonymous_id_is_kept(site_client):
    body = site_client.post(CREATE, {"anonymousId": "anon-123"}, format="json").json()
    assert body["anonymousId"] == "anon-123"


def test_opt_in_mode_defaults_every_purpose_off(site_client):
    body = site_client.post(CREATE, {}, format="json").json()
    assert not any(body["consent"].values())


def test_opt_out_mode_defaults_to_allowed_but_never_fingerprinting(site_client, settings):
    settings.CONSENT_MODE = "opt-out"
    consent = site_client.post(CREATE, {}, format="json").json()["consent"]
    assert consent["analytics"] and consent["personalization"] and consent["saleSharing"]
    assert consent["fingerprinting"] is False


def test_original_client_consent_aliases_are_accepted(site_client):
    body = site_client.post(
        CREATE, {"consent": {"trackingConsent": True, "marketingConsent": True}}, format="json"
    ).json()
    assert body["consent"]["analytics"] is True and body["consent"]["marketing"] is True


def test_gpc_header_forces_sale_sharing_opt_out(site_client):
    body = site_client.post(
        CREATE, {"consent": {"saleSharing": True, "marketing": True}}, format="json", HTTP_SEC_GPC="1"
    ).json()
    assert body["consent"]["saleSharing"] is False and body["consent"]["marketing"] is False
    assert UserSession.objects.get(public_id=body["sessionId"]).gpc is True


def test_ipv6_address_is_truncated_to_48(site_client):
    body = site_client.post(CREATE, {}, format="json", REMOTE_ADDR="2a00:1450:4001:81c::200e").json()
    session = UserSession.objects.get(public_id=body["sessionId"])
    assert session.ip_truncated == "2a00:1450:4001::"
    assert session.country == "DE"


def test_fingerprint_is_dropped_without_consent(site_client):
    site_client.post(CREATE, {"fingerprint": {"hash": "abcdef0123456789", "components": {"tz": 1}}}, format="json")
    assert DeviceFingerprint.objects.count() == 0


def test_fingerprint_is_stored_with_consent(site_client):
    body = site_client.post(
        CREATE,
        {"consent": {"fingerprinting": True}, "fingerprint": {"hash": "abcdef0123456789"}},
        format="json",
    ).json()
    session = UserSession.objects.get(public_id=body["sessionId"])
    assert session.fingerprint.fingerprint_hash == "abcdef0123456789"


# --- create: bad input and credentials --------------------------------------


def test_create_without_site_key_is_401(api_client):
    body = assert_problem(api_client.post(CREATE, {}, format="json"), 401)
    assert "credentials" in body["detail"].lower()
    assert UserSession.objects.count() == 0


def test_create_with_unknown_site_key_is_401(api_client, neuron):
    response = api_client.post(CREATE, {}, format="json", HTTP_X_SITE_KEY="pk_nope")
    assert_problem(response, 401)


def test_create_with_inactive_site_is_401(site_client, neuron):
    neuron.is_active = False
    neuron.save()
    assert_problem(site_client.post(CREATE, {}, format="json"), 401)


def test_malformed_json_is_400_and_stores_nothing(site_client):
    response = site_client.post(CREATE, b'{"consent": ', content_type="application/json")
    body = assert_problem(response, 400)
    assert "Malformed JSON" in body["detail"]
    assert UserSession.objects.count() == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"consent": {"analytics": "yes"}}, "consent.analytics"),
        ({"consent": {"analytics": 1}}, "consent.analytics"),
        ({"consent": {"spying": True}}, "consent.spying"),
        ({"consent": []}, "consent"),
        ({"anonymousId": 42}, "anonymousId"),
        ({"anonymousId": "x" * 129}, "anonymousId"),
        ({"utm": {"source": ["a"]}}, "utm.source"),
        ({"restore": {"sessionId": "not-a-uuid", "token": "t"}}, "restore.sessionId"),
        ({"fingerprint": {"hash": "short"}}, "fingerprint.hash"),
        ({"fingerprint": {"hash": "abcdef0123456789", "components": [1]}}, "fingerprint.components"),
        ({"isAdmin": True}, "isAdmin"),
    ],
)
def test_bad_create_input_is_400_naming_the_field(site_client, payload, field):
    body = assert_problem(site_client.post(CREATE, payload, format="json"), 400)
    assert field in body["errors"], body
    assert UserSession.objects.count() == 0


def test_body_that_is_not_an_object_is_400(site_client):
    assert_problem(site_client.post(CREATE, [1, 2], format="json"), 400)


def test_oversized_body_is_413(site_client):
    response = site_client.post(CREATE, b'{"referrer": "' + b"x" * 70_000 + b'"}', content_type="application/json")
    assert_problem(response, 413)
    assert UserSession.objects.count() == 0


def test_unsupported_media_type_is_415(site_client):
    response = site_client.post(CREATE, b"a=b", content_type="application/x-www-form-urlencoded")
    assert_problem(response, 415)


def test_session_creation_is_throttled_per_client_address(site_client, throttled):
    for _ in range(3):
        assert site_client.post(CREATE, {}, format="json").status_code == 201
    response = site_client.post(CREATE, {}, format="json")
    assert_problem(response, 429)
    assert int(response["Retry-After"]) > 0
    # Another address is not affected.
    other = site_client.post(CREATE, {}, format="json", REMOTE_ADDR="8.8.8.8")
    assert other.status_code == 201
    assert UserSession.objects.count() == 4


def test_the_rate_limit_of_a_test_does_not_outlive_it(site_client):
    """After the 3/min tests above, creation is back to the configured rate for the tests that follow."""
    for _ in range(5):
        assert site_client.post(CREATE, {}, format="json").status_code == 201


# --- restore ----------------------------------------------------------------


def test_restore_returns_the_same_live_session(site_client, live_session):
    _, body = live_session
    response = site_client.post(
        CREATE, {"restore": {"sessionId": body["sessionId"], "token": body["token"]}}, format="json"
    )
    assert response.status_code == 201
    restored = response.json()
    assert restored["restored"] is True
    assert restored["sessionId"] == body["sessionId"]
    assert restored["token"] == body["token"]
    assert UserSession.objects.count() == 1


def test_restore_of_expired_session_keeps_anonymous_id_and_consent(site_client, live_session):
    _, body = live_session
    with time_machine.travel(timezone.now() + timedelta(minutes=31)):
        restored = site_client.post(
            CREATE, {"restore": {"sessionId": body["sessionId"], "token": body["token"]}}, format="json"
        ).json()
    assert restored["restored"] is False
    assert restored["sessionId"] != body["sessionId"]
    assert restored["anonymousId"] == body["anonymousId"]
    assert restored["consent"]["analytics"] is True


def test_restore_with_wrong_token_starts_an_unrelated_session(site_client, live_session):
    _, body = live_session
    restored = site_client.post(
        CREATE, {"restore": {"sessionId": body["sessionId"], "token": "forged-token"}}, format="json"
    ).json()
    assert restored["restored"] is False
    assert restored["anonymousId"] != body["anonymousId"]


def test_restore_from_another_site_is_not_honoured(live_session, api_client):
    from tests.federation.factories import NeuronFactory

    _, body = live_session
    other = NeuronFactory()
    restored = api_client.post(
        CREATE,
        {"restore": {"sessionId": body["sessionId"], "token": body["token"]}},
        format="json",
        HTTP_X_SITE_KEY=other.publishable_key,
    ).json()
    assert restored["restored"] is False
    assert restored["anonymousId"] != body["anonymousId"]


# --- read / update ----------------------------------------------------------


def test_get_returns_own_session(live_session):
    client, body = live_session
    response = client.get(f"/api/sessions/{body['sessionId']}")
    assert response.status_code == 200
    data = response.json()
    assert data["sessionId"] == body["sessionId"]
    assert data["device"] == {"type": "mobile", "browser": "Mobile Safari", "os": "iOS"}
    assert "token" not in data


def test_get_without_token_is_401(api_client, live_session):
    _, body = live_session
    assert_problem(api_client.get(f"/api/sessions/{body['sessionId']}"), 401)


@pytest.mark.parametrize("action", ["activity", "end"])
def test_heartbeat_and_end_without_token_are_401_and_change_nothing(api_client, live_session, action):
    """No Authorization header at all: a 401 problem, and the session is neither extended nor ended."""
    _, body = live_session
    before = UserSession.objects.get(public_id=body["sessionId"])
    with time_machine.travel(timezone.now() + timedelta(minutes=20)):
        response = api_client.post(f"/api/sessions/{body['sessionId']}/{action}", {}, format="json")
    assert_problem(response, 401)
    after = UserSession.objects.get(public_id=body["sessionId"])
    assert after.ended_at is None and after.end_reason == before.end_reason
    assert after.last_activity_at == before.last_activity_at and after.expires_at == before.expires_at
    assert after.token_hash == before.token_hash and after.token_rotated_at == before.token_rotated_at


def test_get_with_unknown_token_is_401(live_session):
    _, body = live_session
    assert_problem(bearer("nope").get(f"/api/sessions/{body['sessionId']}"), 401)


def test_malformed_authorization_header_is_401(api_client, live_session):
    _, body = live_session
    response = api_client.get(f"/api/sessions/{body['sessionId']}", HTTP_AUTHORIZATION="Bearer a b")
    assert_problem(response, 401)


def test_token_of_session_a_cannot_open_session_b(site_client, live_session):
    """BOLA: another session's id with my token is the same 404 as a missing session."""
    client, _ = live_session
    other = site_client.post(CREATE, {}, format="json").json()
    for method, path in [
        ("get", f"/api/sessions/{other['sessionId']}"),
        ("put", f"/api/sessions/{other['sessionId']}"),
        ("post", f"/api/sessions/{other['sessionId']}/activity"),
        ("post", f"/api/sessions/{other['sessionId']}/end"),
        ("get", f"/api/sessions/{uuid.uuid4()}"),
    ]:
        response = getattr(client, method)(path, {}, format="json")
        assert_problem(response, 404)
    assert UserSession.objects.get(public_id=other["sessionId"]).ended_at is None


def test_unknown_api_path_is_a_problem_404(api_client):
    assert_problem(api_client.get("/api/sessions/not-a-uuid"), 404)
    assert_problem(api_client.get("/api/nothing/here"), 404)
    for prefix in ("/api", "/v1"):  # not a redirect to the slashed path (an HTML 301)
        assert_problem(api_client.get(prefix), 404)


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_unknown_api_path_is_a_404_for_writes_without_a_csrf_cookie(db, method):
    """A write to a path no API view serves is a 404, not Django's HTML CSRF failure page."""
    client = Client(enforce_csrf_checks=True)
    for path in ("/api/personalization/segments/not-an-id", "/api/nothing/here", "/v1/nothing"):
        assert_problem(getattr(client, method)(path, "{}", content_type="application/json"), 404)


def test_a_csrf_failure_is_a_problem_under_the_api_and_a_page_elsewhere(rf):
    from config.views import csrf_failure

    problem = csrf_failure(rf.post("/api/sessions/somewhere"), reason="CSRF cookie not set.")
    assert problem.status_code == 403 and problem["Content-Type"] == "application/problem+json"
    assert "CSRF cookie not set." in json.loads(problem.content)["detail"]
    page = csrf_failure(rf.post("/admin/login/"), reason="CSRF cookie not set.")
    assert page.status_code == 403 and page["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("field", ["traits", "preferences", "metadata"])
@pytest.mark.parametrize("document", [{"note": "a\u0000b"}, {"a\u0000b": 1}, {"deep": [{"x": ["\u0000"]}]}])
def test_put_refuses_a_nul_character_in_a_json_document(live_session, field, document):
    """PostgreSQL's jsonb cannot hold one (a 500 there before): a 400 naming the field on both databases."""
    client, body = live_session
    response = client.put(f"/api/sessions/{body['sessionId']}", {field: document}, format="json")
    assert field in assert_problem(response, 400)["errors"]
    session = UserSession.objects.get(public_id=body["sessionId"])
    assert session.metadata == {} and (session.profile is None or session.profile.traits == {})


def test_put_keeps_a_backslash_u0000_that_is_only_text(live_session):
    """Six characters that spell an escape are not a NUL character."""
    client, body = live_session
    response = client.put(f"/api/sessions/{body['sessionId']}", {"metadata": {"note": "\\u0000"}}, format="json")
    assert response.status_code == 200, response.content
    assert UserSession.objects.get(public_id=body["sessionId"]).metadata == {"note": "\\u0000"}


def test_put_updates_traits_preferences_consent_and_metadata(live_session):
    client, body = live_session
    url = f"/api/sessions/{body['sessionId']}"
    response = client.put(
        url,
        {
            "traits": {"plan": "pro"},
            "preferences": {"theme": "dark"},
            "consent": {"personalization": True},
            "metadata": {"abBucket": "B"},
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["traits"] == {"plan": "pro"}
    assert data["preferences"] == {"theme": "dark"}
    assert data["consent"]["personalization"] is True and data["consent"]["analytics"] is True
    assert data["metadata"] == {"abBucket": "B"}
    # $set semantics: later values overwrite, others stay.
    data = client.put(url, {"traits": {"seats": 3}}, format="json").json()
    assert data["traits"] == {"plan": "pro", "seats": 3}


def test_put_rejects_fields_outside_the_allowlist(live_session):
    """Mass assignment: counters, ids and timestamps cannot be written."""
    client, body = live_session
    for field, value in [
        ("eventCount", 1000),
        ("anonymousId", "x"),
        ("endedAt", None),
        ("neuron", 1),
        ("engagementScore", 99),
    ]:
        problem = assert_problem(client.put(f"/api/sessions/{body['sessionId']}", {field: value}, format="json"), 400)
        assert field in problem["errors"]
    session = UserSession.objects.get(public_id=body["sessionId"])
    assert session.event_count == 0 and session.ended_at is None


@pytest.mark.parametrize(
    "payload",
    [{"userId": ""}, {"userId": 12}, {"traits": "x"}, {"traits": [1]}, {"preferences": {"a": "x" * 9000}}],
)
def test_put_bad_values_are_400(live_session, payload):
    client, body = live_session
    problem = assert_problem(client.put(f"/api/sessions/{body['sessionId']}", payload, format="json"), 400)
    assert set(payload) <= set(problem["errors"])


def test_set_user_id_attaches_profile_and_rotates_token(live_session):
    client, body = live_session
    url = f"/api/sessions/{body['sessionId']}"
    response = client.put(url, {"userId": "user-42"}, format="json")
    assert response.status_code == 200
    data = response.json()
    assert data["identified"] is True
    new_token = data["token"]
    assert new_token != body["token"]
    profile = GlobalUserProfile.objects.get()
    assert "user-42" not in profile.user_id_hash and "user-42" not in profile.user_id_encrypted
    # The new token works; the old one works during the grace period only.
    assert bearer(new_token).get(url).status_code == 200
    assert client.get(url).status_code == 200
    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        assert_problem(client.get(url), 401)
        assert bearer(new_token).get(url).status_code == 200
    # Setting the same user id again changes nothing and issues no token.
    again = bearer(new_token).put(url, {"userId": "user-42"}, format="json").json()
    assert "token" not in again
    assert GlobalUserProfile.objects.count() == 1


# --- heartbeat, rotation, timeouts ------------------------------------------


def test_heartbeat_extends_idle_expiry(live_session):
    client, body = live_session
    url = f"/api/sessions/{body['sessionId']}"
    start = timezone.now()
    with time_machine.travel(start + timedelta(minutes=20)):
        response = client.post(f"{url}/activity")
        assert response.status_code == 200
        client = bearer(response.json()["token"])  # 20 min > rotation interval: a new token
    with time_machine.travel(start + timedelta(minutes=45)):
        assert client.get(url).status_code == 200  # 25 min after the heartbeat: alive
    with time_machine.travel(start + timedelta(minutes=51)):
        assert_problem(client.get(url), 401)  # 31 min idle: expired


def test_heartbeat_after_rotation_interval_rotates_token_with_grace(live_session):
    client, body = live_session
    url = f"/api/sessions/{body['sessionId']}"
    start = timezone.now()
    with time_machine.travel(start + timedelta(minutes=5)):
        assert "token" not in client.post(f"{url}/activity").json()
    with time_machine.travel(start + timedelta(minutes=16)):
        rotated = client.post(f"{url}/activity").json()
        assert "token" in rotated
        # The old token still works inside the grace period, without rotating again.
        assert "token" not in client.post(f"{url}/activity").json()
    with time_machine.travel(start + timedelta(minutes=17, seconds=5)):
        assert_problem(client.get(url), 401)
        assert bearer(rotated["token"]).get(url).status_code == 200


def test_absolute_lifetime_ends_even_an_active_session(live_session, settings):
    client, body = live_session
    url = f"/api/sessions/{body['sessionId']}"
    start = timezone.now()
    hours = 0
    while hours < 23:
        hours += 0.25
        with time_machine.travel(start + timedelta(hours=hours)):
            response = client.post(f"{url}/activity")
            if "token" in response.json():
                client = bearer(response.json()["token"])
    with time_machine.travel(start + timedelta(hours=24, seconds=1)):
        assert_problem(client.get(url), 401)


def test_end_session_then_every_route_is_401(live_session):
    client, body = live_session
    url = f"/api/sessions/{body['sessionId']}"
    response = client.post(f"{url}/end")
    assert response.status_code == 200
    assert response.json()["endedAt"] is not None
    for method, path in [("get", url), ("put", url), ("post", f"{url}/activity"), ("post", f"{url}/end")]:
        assert_problem(getattr(client, method)(path, {}, format="json"), 401)
    session = UserSession.objects.get(public_id=body["sessionId"])
    assert session.end_reason == "client"


def test_expired_token_is_401_on_every_route():
    session = UserSessionFactory(factory_token="tok-expired-" + "x" * 30)
    session.started_at = session.last_activity_at = timezone.now() - timedelta(hours=2)
    session.expires_at = session.last_activity_at + timedelta(minutes=30)
    session.save()
    client = bearer("tok-expired-" + "x" * 30)
    url = f"/api/sessions/{session.public_id}"
    for method, path in [("get", url), ("put", url), ("post", f"{url}/activity"), ("post", f"{url}/end")]:
        assert_problem(getattr(client, method)(path, {}, format="json"), 401)


def test_device_info_differs_for_desktop(site_client):
    body = site_client.post(CREATE, {}, format="json", HTTP_USER_AGENT=DESKTOP_UA).json()
    session = UserSession.objects.get(public_id=body["sessionId"])
    assert (session.device_type, session.browser, session.os) == ("desktop", "Chrome", "Windows")


# --- rate limit counted in Redis --------------------------------------------


@pytest.fixture
def throttled(settings):
    """Session creation limited to 3 per minute per address, counters fresh."""
    from rest_framework.settings import api_settings
    from rest_framework.throttling import ScopedRateThrottle

    from config.api.throttling import throttle_reset

    # The class keeps the rates it read at import: put those back afterwards (when this fixture ends
    # the overridden settings are still in force, so reading them again would keep 3/min for the
    # tests that follow).
    original = ScopedRateThrottle.THROTTLE_RATES
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"session_create": "3/min"}}
    ScopedRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
    throttle_reset()
    yield
    throttle_reset()
    ScopedRateThrottle.THROTTLE_RATES = original


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="counts in Redis (REDIS_URL); DRF's throttle otherwise")
def test_refused_creations_do_not_count_and_the_limit_slides(site_client, throttled, monkeypatch):
    """Hammering while refused does not extend the block; a full window later all is allowed again."""
    from config.api.throttling import CountingRateThrottle

    now = [1_000_040.0]  # 20 s into a one-minute window
    monkeypatch.setattr(CountingRateThrottle, "timer", lambda self: now[0])
    for _ in range(3):
        assert site_client.post(CREATE, {}, format="json").status_code == 201
    for _ in range(5):
        response = site_client.post(CREATE, {}, format="json")
        assert_problem(response, 429)
    # The next window: the previous one (3, refused ones not counted) weighs (1 - elapsed).
    now[0] += 60  # 20 s into the next window: 3 x 2/3 = 2, so one more fits
    assert 0 < int(response["Retry-After"]) <= 60
    assert site_client.post(CREATE, {}, format="json").status_code == 201
    assert_problem(site_client.post(CREATE, {}, format="json"), 429)
    now[0] += 120
    assert site_client.post(CREATE, {}, format="json").status_code == 201


def test_creation_is_not_refused_when_the_rate_limit_store_is_down(site_client, throttled, settings):
    """Redis unreachable: the limit cannot be counted, so requests pass (and nothing fails)."""
    from tests.sessions_app.test_live import dead_redis_url

    settings.REDIS_URL = dead_redis_url()
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    for _ in range(5):
        assert site_client.post(CREATE, {}, format="json").status_code == 201


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="counts in Redis (REDIS_URL); DRF's throttle otherwise")
def test_first_requests_from_many_threads_are_all_counted(throttled, caplog, monkeypatch):
    """A threaded server's first burst makes one Redis client per process: no request of the
    burst finds its connection closed under it (by a racing thread's replaced client) and
    lets itself through uncounted."""
    import threading
    import time

    import redis
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from config.api import throttling
    from sessions_app.apis import SessionCreateApi

    real_from_url = redis.Redis.from_url

    def slow_from_url(*args, **kwargs):  # widen the window in which threads race to make one
        time.sleep(0.005)
        return real_from_url(*args, **kwargs)

    monkeypatch.setattr(redis.Redis, "from_url", slow_from_url)
    view, factory = SessionCreateApi(), APIRequestFactory()

    def call(i: int, attempt: int, start: threading.Barrier, results: list[bool]) -> None:
        request = Request(factory.post(CREATE, REMOTE_ADDR=f"10.{attempt}.0.{i}"))
        start.wait()
        results.append(throttling.CountingRateThrottle().allow_request(request, view))

    for attempt in range(5):
        throttling.throttle_reset()
        start, results = threading.Barrier(16), []
        threads = [threading.Thread(target=call, args=(i, attempt, start, results)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [True] * 16
        assert throttling._down_until == 0.0, "a request found Redis 'down' and went uncounted"
    assert "rate limits unavailable" not in caplog.text
