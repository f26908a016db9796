"""/v1, route by route: every Segment path and the aliases SDKs post to (/v1/import, /v1/t, ...)
gets success, bad input, missing and wrong credentials, and the consent rules.

The behaviour of each call in depth (sessionization, identity, limits, generated payloads) is in
test_segment_apis.py; here each route is held to the same contract.
"""

from __future__ import annotations

import base64
import gzip

import orjson
import pytest
from django.test import Client

from privacy.crypto import identifier_hash
from sessions_app.models import (
    AnonymousTrafficCount,
    BehaviorEvent,
    DeviceFingerprint,
    GlobalUserProfile,
    ProfileAlias,
    ProfileMerge,
    SessionBridge,
    UserSession,
)
from tests.federation.factories import NeuronFactory
from tests.helpers import assert_problem

pytestmark = pytest.mark.django_db

GRANTED = {"consent": {"categoryPreferences": {"Analytics": True, "Personalization": True}}}
CALL_TYPES = ("track", "page", "screen", "identify", "group", "alias")
# Every route and the call it takes ("batch": a list of calls).
ROUTES = {
    "/v1/track": "track",
    "/v1/page": "page",
    "/v1/screen": "screen",
    "/v1/identify": "identify",
    "/v1/group": "group",
    "/v1/alias": "alias",
    "/v1/batch": "batch",
    "/v1/import": "batch",
    "/v1/t": "track",
    "/v1/p": "page",
    "/v1/s": "screen",
    "/v1/i": "identify",
    "/v1/g": "group",
    "/v1/a": "alias",
}
EVENT_ROUTES = [route for route, kind in ROUTES.items() if kind in ("track", "page", "screen")]
CALLS = {
    "track": {"anonymousId": "anon-1", "event": "Clicked Buy", "properties": {"sku": "A"}},
    "page": {"anonymousId": "anon-1", "name": "Pricing", "properties": {"url": "https://shop.example.com/pricing?p=2"}},
    "screen": {"anonymousId": "anon-1", "name": "Home"},
    "identify": {"anonymousId": "anon-1", "userId": "user-42", "traits": {"plan": "pro"}},
    "group": {"anonymousId": "anon-1", "groupId": "acme", "traits": {"seats": 3}},
    "alias": {"previousId": "anon-0", "userId": "user-9"},
}
# What a route stores from body(): BehaviorEvent rows, and calls answered `dropped` without consent.
EVENTS = {"track": 1, "page": 1, "screen": 1, "identify": 0, "group": 0, "alias": 0, "batch": 3}
DROPPED = {"track": 0, "page": 0, "screen": 0, "identify": 1, "group": 1, "alias": 1, "batch": 3}
TABLES = (
    UserSession,
    BehaviorEvent,
    GlobalUserProfile,
    ProfileAlias,
    ProfileMerge,
    SessionBridge,
    DeviceFingerprint,
    AnonymousTrafficCount,
)
NOTHING = {model.__name__: 0 for model in TABLES}
NOTHING_BEHAVIOURAL = {name: 0 for name in NOTHING if name != "AnonymousTrafficCount"}


def body(route: str, *, context: dict | None = None, **fields) -> dict:
    """A valid body for `route` (with analytics consent unless `context` says otherwise);
    `fields` go into the call, or into the last call of a batch."""
    context = GRANTED if context is None else context
    kind = ROUTES[route]
    if kind != "batch":
        return {**CALLS[kind], "context": context, **fields}
    calls = [{"type": call_type, **CALLS[call_type], "context": context} for call_type in CALL_TYPES]
    calls[-1].update(fields)
    return {"batch": calls}


def field_name(route: str, field: str) -> str:
    """How a problem names `field` of body(route, **{field: ...})."""
    return f"batch[{len(CALL_TYPES) - 1}].{field}" if ROUTES[route] == "batch" else field


def basic(username: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def post(route: str, payload, *, key: str | None = None, gzipped: bool = False, **headers):
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    if gzipped:
        raw = gzip.compress(raw)
        headers["HTTP_CONTENT_ENCODING"] = "gzip"
    if key is not None:
        headers["HTTP_AUTHORIZATION"] = basic(key)
    headers.setdefault("content_type", "application/json")
    return Client(REMOTE_ADDR="203.0.113.9").post(route, raw, **headers)


def stored() -> dict[str, int]:
    """Rows in every table a /v1 call can write to."""
    return {model.__name__: model.objects.count() for model in TABLES}


def behavioural_rows() -> dict[str, int]:
    """Rows in every table but the anonymous aggregates (what consent gates)."""
    return {model.__name__: model.objects.count() for model in TABLES if model is not AnonymousTrafficCount}


def assert_applied(kind: str, neuron) -> None:
    """The effect of body() for a call of `kind` is in the database, in `neuron`'s data."""
    events = {e.event_type: e for e in BehaviorEvent.objects.filter(neuron=neuron)}
    if kind in ("track", "batch"):
        assert (events["track"].event_name, events["track"].properties) == ("Clicked Buy", {"sku": "A"})
    if kind in ("page", "batch"):
        assert (events["page_view"].event_name, events["page_view"].page_path) == ("Pricing", "/pricing")
    if kind in ("screen", "batch"):
        assert events["screen_view"].event_name == "Home"
    assert BehaviorEvent.objects.filter(neuron=neuron).count() == EVENTS[kind]
    if kind in ("identify", "group", "batch"):
        session = UserSession.objects.get(neuron=neuron, anonymous_id="anon-1")
        traits = session.profile.traits
        if kind != "group":
            assert session.profile.user_id_hash == identifier_hash("user-42")
            assert traits["plan"] == "pro"
        if kind != "identify":
            assert traits["groups"] == {"acme": {"seats": 3}}
    if kind in ("alias", "batch"):
        user = GlobalUserProfile.objects.get(neuron=neuron, user_id_hash=identifier_hash("user-9"))
        assert ProfileAlias.objects.filter(profile=user).exists()


# --- success ----------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("auth", ["basic", "basic-without-colon", "body", "gzip"])
def test_every_route_commits_its_calls_and_answers_like_segment(neuron, route, auth):
    """Each route (aliases too) takes the write key as Basic user name or writeKey, gzip or not,
    answers 200 `{"success": true, ...}` and has stored what its call does."""
    kind = ROUTES[route]
    payload = body(route)
    if auth == "basic":
        response = post(route, payload, key=neuron.publishable_key)
    elif auth == "basic-without-colon":
        # Segment still accepts a key encoded without the colon (older SDKs).
        credentials = base64.b64encode(neuron.publishable_key.encode()).decode()
        response = post(route, payload, HTTP_AUTHORIZATION=f"Basic {credentials}")
    elif auth == "body":
        response = post(route, {**payload, "writeKey": neuron.publishable_key})
    else:
        response = post(route, payload, key=neuron.publishable_key, gzipped=True)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"success": True, "stored": EVENTS[kind], "duplicates": 0, "anonymous": 0, "dropped": 0}
    assert_applied(kind, neuron)
    assert AnonymousTrafficCount.objects.count() == 0


@pytest.mark.parametrize("route", ["/v1/t", "/v1/p", "/v1/s", "/v1/batch", "/v1/import"])
def test_a_resent_call_is_a_duplicate_on_every_event_route(neuron, route):
    """Idempotent on messageId through the aliases as well: the resend stores nothing."""
    kind = ROUTES[route]
    if kind == "batch":
        payload = body(route)
        for index, call in enumerate(payload["batch"]):
            call["messageId"] = f"m{index}"
    else:
        payload = body(route, messageId="m1")
    assert post(route, payload, key=neuron.publishable_key).json()["stored"] == EVENTS[kind]
    again = post(route, payload, key=neuron.publishable_key)
    assert again.status_code == 200, again.content
    assert (again.json()["stored"], again.json()["duplicates"]) == (0, EVENTS[kind])
    assert BehaviorEvent.objects.count() == EVENTS[kind]


# --- bad input ----------------------------------------------------------------

# (field, value, the error's name): each makes any call invalid, in a batch too, whatever its type.
INVALID_FIELDS = [
    ("anonymousId", True, "anonymousId"),
    ("anonymousId", "a" * 129, "anonymousId"),
    ("anonymousId", "anon\x00-1", "anonymousId"),
    ("userId", {"id": 1}, "userId"),
    ("userId", "u" * 256, "userId"),
    ("context", "web", "context"),
    ("context", {"consent": ["analytics"]}, "context.consent"),
    ("context", {"consent": {"categoryPreferences": "all"}}, "context.consent.categoryPreferences"),
    (
        "context",
        {"consent": {"categoryPreferences": {"analytics": "yes"}}},
        "context.consent.categoryPreferences.analytics",
    ),
    ("context", {"note": "nul \x00 here"}, "context"),
    ("integrations", [1], "integrations"),
    ("properties", [1], "properties"),
    ("properties", {"nul\x00key": 1}, "properties"),
    ("traits", "pro", "traits"),
    ("traits", {"email": "x\x00@example.com"}, "traits"),
    ("timestamp", "noon", "timestamp"),
    ("timestamp", "0001-01-01T00:00:00+01:00", "timestamp"),
    ("originalTimestamp", "2026-13-01T00:00:00Z", "originalTimestamp"),
    ("sentAt", "yesterday", "sentAt"),
    ("messageId", 7, "messageId"),
    ("messageId", "m" * 129, "messageId"),
]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("field", "value", "name"), INVALID_FIELDS, ids=[f"{field}={value!r:.24}" for field, value, _ in INVALID_FIELDS]
)
def test_an_invalid_field_is_400_naming_it_and_nothing_is_stored(neuron, route, field, value, name):
    """A wrong type, an oversize or NUL-holding string, a bad date: 400 naming the field (in a
    batch, the item's), on both databases, and not even the batch's valid calls are stored."""
    problem = assert_problem(post(route, body(route, **{field: value}), key=neuron.publishable_key), 400)
    assert field_name(route, name) in problem["errors"], problem
    assert stored() == NOTHING


# Each call type's own required fields and types: (fields, the error's name).
INVALID_CALLS = {
    "track": [({"event": None}, "event"), ({"event": 5}, "event"), ({"event": "e" * 201}, "event")],
    "page": [({"name": 5}, "name"), ({"properties": {"url": 5}}, "properties.url")],
    "screen": [({"name": ["Home"]}, "name"), ({"context": {**GRANTED, "page": {"path": 1}}}, "context.page.path")],
    "identify": [({"anonymousId": None, "userId": None}, "userId"), ({"userId": 4.5}, "userId")],
    "group": [({"groupId": None}, "groupId"), ({"groupId": False}, "groupId"), ({"groupId": "g" * 256}, "groupId")],
    "alias": [({"previousId": None}, "previousId"), ({"userId": None}, "userId"), ({"previousId": []}, "previousId")],
}
BATCH_ONLY = [({"type": "explode"}, "type"), ({"type": None}, "type"), ({"type": "batch"}, "type")]
# (route, the call type of the bad call, fields, name); a batch's last call is the bad one.
CALL_CASES = [
    case
    for route, kind in ROUTES.items()
    for case in (
        [(route, kind, fields, name) for fields, name in INVALID_CALLS[kind]]
        if kind != "batch"
        else [(route, "batch", fields, name) for fields, name in BATCH_ONLY]
        + [(route, k, fields, name) for k in CALL_TYPES for fields, name in INVALID_CALLS[k]]
    )
]


@pytest.mark.parametrize(("route", "kind", "fields", "name"), CALL_CASES)
def test_a_call_without_what_its_type_needs_is_400(neuron, route, kind, fields, name):
    """Each call type's required fields (event, groupId, previousId and userId, an id) and their
    types, on its own route and inside a batch: 400 naming the field, nothing stored."""
    if kind in (ROUTES[route], "batch"):
        payload = body(route, **fields)
    else:
        payload = body(route)
        payload["batch"][-1] = {"type": kind, **CALLS[kind], "context": GRANTED, **fields}
    problem = assert_problem(post(route, payload, key=neuron.publishable_key), 400)
    assert field_name(route, name) in problem["errors"], problem
    assert stored() == NOTHING


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("raw", "name"),
    [(b"[1, 2]", "body"), (b'"track"', "body"), (b"{}", None), (b"", None), (b"null", "body")],
)
def test_a_body_that_is_not_a_call_is_400(neuron, route, raw, name):
    """Not an object, or an empty one: 400 naming what is missing."""
    problem = assert_problem(post(route, raw, key=neuron.publishable_key), 400)
    if name is None:  # {} or no body: the call's id (alias: previousId), or the batch's list
        name = {"batch": "batch", "alias": "previousId"}.get(ROUTES[route], "userId")
    assert name in problem["errors"], problem
    assert stored() == NOTHING


@pytest.mark.parametrize("route", ["/v1/batch", "/v1/import"])
@pytest.mark.parametrize(
    ("payload", "name"),
    [({"batch": {"type": "track"}}, "batch"), ({"batch": None}, "batch"), ({"batch": [1]}, "batch[0]")],
)
def test_a_batch_needs_a_list_of_call_objects(neuron, route, payload, name):
    """`batch` must be a list of objects: 400 naming it (or the item)."""
    problem = assert_problem(post(route, payload, key=neuron.publishable_key), 400)
    assert name in problem["errors"], problem
    assert stored() == NOTHING


@pytest.mark.parametrize("route", ROUTES)
def test_malformed_json_and_bad_gzip_are_400(neuron, route):
    """Problem documents, so SDKs stop retrying; nothing stored."""
    malformed = assert_problem(post(route, b'{"anonymousId": ', key=neuron.publishable_key), 400)
    assert malformed["title"] == "Malformed request body"
    assert_problem(post(route, b"not gzip", key=neuron.publishable_key, HTTP_CONTENT_ENCODING="gzip"), 400)
    truncated = gzip.compress(orjson.dumps(body(route)))[:-12]
    assert_problem(post(route, truncated, key=neuron.publishable_key, HTTP_CONTENT_ENCODING="gzip"), 400)
    assert stored() == NOTHING


@pytest.mark.parametrize("route", ROUTES)
def test_other_media_types_and_encodings_are_415(neuron, route):
    """Only JSON (text/plain too, as beacons send it), plain or gzip."""
    payload = body(route)
    assert_problem(post(route, payload, key=neuron.publishable_key, content_type="application/xml"), 415)
    assert_problem(post(route, payload, key=neuron.publishable_key, HTTP_CONTENT_ENCODING="br"), 415)
    assert stored() == NOTHING
    beacon = post(route, payload, key=neuron.publishable_key, content_type="text/plain")
    assert beacon.status_code == 200, beacon.content


@pytest.mark.parametrize("route", ROUTES)
def test_over_segments_size_limits_is_413(neuron, route, settings):
    """32 KB per call (and per call inside a batch: 400 naming it), 500 KB per batch."""
    blob = {"blob": "x" * (33 * 1024)}
    if ROUTES[route] != "batch":
        assert_problem(post(route, body(route, properties=blob), key=neuron.publishable_key), 413)
        assert_problem(post(route, body(route, traits=blob), key=neuron.publishable_key, gzipped=True), 413)
    else:
        problem = assert_problem(post(route, body(route, properties=blob), key=neuron.publishable_key), 400)
        assert f"batch[{len(CALL_TYPES) - 1}]" in problem["errors"], problem
        big = {"batch": [{"type": "track", **CALLS["track"], "properties": {"b": "x" * 30 * 1024}}] * 20}
        assert_problem(post(route, big, key=neuron.publishable_key), 413)
        settings.SEGMENT_MAX_BATCH_EVENTS = 5
        assert_problem(post(route, body(route), key=neuron.publishable_key), 413)
    assert stored() == NOTHING


@pytest.mark.parametrize("route", EVENT_ROUTES + ["/v1/batch", "/v1/import"])
@pytest.mark.parametrize("context", [GRANTED, {}], ids=["consent", "no-consent"])
def test_a_timestamp_that_leaves_the_calendar_once_corrected_is_400(neuron, route, context):
    """originalTimestamp corrected by sentAt past year 1: 400 naming the timestamp (in a batch, the
    call's), with or without consent, and nothing stored."""
    skewed = {"originalTimestamp": "0001-01-01T00:00:01Z", "sentAt": "9999-12-31T23:59:59Z"}
    if ROUTES[route] == "batch":
        payload = body(route, context=context)
        payload["batch"][1].update(skewed)  # the page call: named by its place in the batch
        expected = "batch[1].timestamp"
    else:
        payload = body(route, context=context, **skewed)
        expected = "timestamp"
    problem = assert_problem(post(route, payload, key=neuron.publishable_key), 400)
    assert expected in problem["errors"], problem
    assert stored() == NOTHING


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_only_post_is_allowed(neuron, route, method):
    """405 with Allow: POST, a problem document, even with a valid key."""
    client = Client(HTTP_AUTHORIZATION=basic(neuron.publishable_key))
    response = client.generic(method, route, orjson.dumps(body(route)), content_type="application/json")
    assert_problem(response, 405)
    assert response["Allow"] == "POST"
    assert stored() == NOTHING


def test_an_unknown_v1_path_is_a_404_problem(neuron):
    """Not an HTML page: SDK paths we do not serve are problem documents."""
    assert_problem(post("/v1/unknown", body("/v1/track"), key=neuron.publishable_key), 404)


# --- credentials --------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_missing_write_key_is_401_with_a_basic_challenge(neuron, route):
    """No header and no writeKey (or an empty one): 401 with WWW-Authenticate, nothing stored."""
    for payload in (body(route), {**body(route), "writeKey": ""}):
        response = post(route, payload)
        problem = assert_problem(response, 401)
        assert response["WWW-Authenticate"] == 'Basic realm="Segment write key"'
        assert "write key" in problem["detail"]
    assert stored() == NOTHING


WRONG_AUTHORIZATION = {
    "unknown key": basic("pk_unknown"),
    "empty user name": basic("", "pk_anything"),
    "not base64": "Basic !!!notbase64",
    "not UTF-8": "Basic " + base64.b64encode(b"\xff\xfe:").decode(),
    "no credentials": "Basic",
    "blank credentials": "Basic    ",
    # the right key, base64-encoded, but under another scheme
    "bearer scheme": "Bearer {encoded}",
    "digest scheme": "Digest {encoded}",
    "lowercase without space": "basic{encoded}",
    "key as password": basic("", "{key}"),
    "over 64 characters": basic("pk_" + "x" * 70),
    "secret key": basic("sk_secret_{slug}"),
}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("case", WRONG_AUTHORIZATION)
def test_wrong_credentials_are_401_and_store_nothing(neuron, route, case):
    """Unknown or malformed Basic credentials, another scheme, the key in the wrong place or the
    server secret instead of the write key: 401 with the challenge, nothing stored."""
    encoded = base64.b64encode(f"{neuron.publishable_key}:".encode()).decode()
    authorization = WRONG_AUTHORIZATION[case].format(key=neuron.publishable_key, slug=neuron.slug, encoded=encoded)
    response = post(route, body(route), HTTP_AUTHORIZATION=authorization)
    assert_problem(response, 401)
    assert response["WWW-Authenticate"].startswith("Basic")
    assert stored() == NOTHING


WRONG_WRITE_KEYS = {
    "unknown": lambda neuron: "pk_unknown",
    "secret key": lambda neuron: f"sk_secret_{neuron.slug}",
    "a number": lambda neuron: 12345,
    "in a list": lambda neuron: [neuron.publishable_key],
    "in an object": lambda neuron: {"writeKey": neuron.publishable_key},
}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("case", WRONG_WRITE_KEYS)
def test_a_wrong_write_key_in_the_body_is_401(neuron, route, case):
    """An unknown writeKey, or one that is not a string, authenticates nothing."""
    response = post(route, {**body(route), "writeKey": WRONG_WRITE_KEYS[case](neuron)})
    assert_problem(response, 401)
    assert response["WWW-Authenticate"].startswith("Basic")
    assert stored() == NOTHING


@pytest.mark.parametrize("route", ROUTES)
def test_the_authorization_header_wins_over_the_body(neuron, route):
    """A bad header is not rescued by a good writeKey in the body."""
    payload = {**body(route), "writeKey": neuron.publishable_key}
    assert_problem(post(route, payload, key="pk_unknown"), 401)
    assert stored() == NOTHING


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("where", ["basic", "body"])
def test_an_inactive_sites_write_key_is_401(neuron, route, where):
    """A disabled site's key opens nothing, even one that worked a moment ago (cached lookups)."""
    assert post(route, body(route, anonymousId="warm-up"), key=neuron.publishable_key).status_code == 200
    neuron.is_active = False
    neuron.save()
    before = stored()
    if where == "basic":
        response = post(route, body(route), key=neuron.publishable_key)
    else:
        response = post(route, {**body(route), "writeKey": neuron.publishable_key})
    assert_problem(response, 401)
    assert stored() == before


@pytest.mark.parametrize("route", ROUTES)
def test_credentials_are_checked_before_the_call(neuron, route):
    """Without a valid key an invalid call is a 401, not a 400 describing the call."""
    assert_problem(post(route, body(route, anonymousId=True), key="pk_unknown"), 401)
    assert_problem(post(route, {"batch": 1, "event": 2}), 401)


@pytest.mark.parametrize("route", ROUTES)
def test_a_write_key_opens_only_its_own_site(neuron, route):
    """Two sites, one key each: the calls land in the key's site only."""
    other = NeuronFactory()
    assert post(route, body(route), key=other.publishable_key).status_code == 200
    assert_applied(ROUTES[route], other)
    assert not BehaviorEvent.objects.filter(neuron=neuron).exists()
    assert not UserSession.objects.filter(neuron=neuron).exists()
    assert not GlobalUserProfile.objects.filter(neuron=neuron).exists()


# --- consent ------------------------------------------------------------------

WITHOUT_ANALYTICS = {
    "no context": {},
    "no consent": {"consent": {}},
    "refused": {"consent": {"categoryPreferences": {"Analytics": False, "Personalization": True}}},
    "other categories only": {"consent": {"categoryPreferences": {"Personalization": True, "Ads": True}}},
    "unknown category": {"consent": {"categoryPreferences": {"Statistics-ish": True}}},
}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("consent", WITHOUT_ANALYTICS)
def test_without_analytics_consent_no_behavioural_row_is_stored(neuron, route, consent):
    """Opt-in mode without analytics consent: events only increment the anonymous aggregates,
    identify / group / alias are dropped, and no session, event, profile or alias is stored."""
    kind = ROUTES[route]
    response = post(route, body(route, context=WITHOUT_ANALYTICS[consent]), key=neuron.publishable_key)
    assert response.status_code == 200, response.content
    anonymous = EVENTS[kind]
    assert response.json() == {
        "success": True,
        "stored": 0,
        "duplicates": 0,
        "anonymous": anonymous,
        "dropped": DROPPED[kind],
    }
    assert behavioural_rows() == NOTHING_BEHAVIOURAL
    counts = AnonymousTrafficCount.objects.filter(neuron=neuron)
    assert sum(c.events for c in counts) == anonymous
    assert sum(c.page_views for c in counts) == {"page": 1, "screen": 1, "batch": 2}.get(kind, 0)


@pytest.mark.parametrize("route", ["/v1/batch", "/v1/import"])
def test_a_batch_stores_only_the_calls_that_carry_consent(neuron, route):
    """Consent is per call: in one batch the consenting visitor's calls are stored, the other's
    only counted or dropped."""
    payload = body(route)
    refused = {"consent": {"categoryPreferences": {"analytics": False}}}
    payload["batch"] += [
        {"type": "track", "anonymousId": "anon-2", "event": "Refused", "context": refused},
        {"type": "identify", "anonymousId": "anon-2", "userId": "user-2", "context": refused},
    ]
    response = post(route, payload, key=neuron.publishable_key)
    assert response.status_code == 200, response.content
    assert (response.json()["stored"], response.json()["anonymous"], response.json()["dropped"]) == (3, 1, 1)
    assert not UserSession.objects.filter(anonymous_id="anon-2").exists()
    assert not BehaviorEvent.objects.filter(event_name="Refused").exists()
    assert not GlobalUserProfile.objects.filter(user_id_hash=identifier_hash("user-2")).exists()
    assert_applied("batch", neuron)


@pytest.mark.parametrize("route", ["/v1/batch", "/v1/import"])
def test_a_batchs_top_level_consent_reaches_each_call_unless_the_call_overrides_it(neuron, route):
    """Top-level context merges into each call; a call's own context.consent wins."""
    calls = body(route, context={})["batch"]
    for call in calls:
        del call["context"]
    response = post(route, {"context": GRANTED, "batch": calls}, key=neuron.publishable_key)
    assert response.json()["stored"] == 3
    assert_applied("batch", neuron)
    refused = {"consent": {"categoryPreferences": {"analytics": False}}}
    calls = [
        {**call, "anonymousId": "anon-3", "messageId": f"x{i}", "context": refused} for i, call in enumerate(calls)
    ]
    calls = [call for call in calls if call["type"] in ("track", "page", "screen")]
    response = post(route, {"context": GRANTED, "batch": calls}, key=neuron.publishable_key)
    assert (response.json()["stored"], response.json()["anonymous"]) == (0, 3)
    assert not UserSession.objects.filter(anonymous_id="anon-3").exists()


@pytest.mark.parametrize("route", EVENT_ROUTES)
def test_a_refusal_on_any_event_route_stops_storage_for_the_live_session(neuron, route):
    """Consent withdrawn in context reaches the session (deleting its stored events); its events are
    then only counted."""
    assert post(route, body(route), key=neuron.publishable_key).json()["stored"] == 1
    refused = {"consent": {"categoryPreferences": {"analytics": False}}}
    response = post(route, body(route, context=refused), key=neuron.publishable_key)
    assert response.json()["anonymous"] == 1
    assert UserSession.objects.get().consent["analytics"] is False
    post(route, body(route, context={}), key=neuron.publishable_key)
    assert BehaviorEvent.objects.count() == 0


@pytest.mark.parametrize("route", ROUTES)
def test_opt_out_mode_stores_until_refused(neuron, route, settings):
    """CCPA mode: no consent in context is consent; an explicit refusal still stores nothing."""
    settings.CONSENT_MODE = "opt-out"
    refused = {"consent": {"categoryPreferences": {"analytics": False}}}
    response = post(route, body(route, context=refused), key=neuron.publishable_key)
    assert response.json()["dropped"] == DROPPED[ROUTES[route]]
    assert behavioural_rows() == NOTHING_BEHAVIOURAL
    response = post(route, body(route, context={}), key=neuron.publishable_key)
    assert response.status_code == 200, response.content
    assert response.json()["stored"] == EVENTS[ROUTES[route]]
    assert_applied(ROUTES[route], neuron)


# --- schema -------------------------------------------------------------------


def test_openapi_documents_import_as_segments_batch_alias(db):
    """/v1/import (Segment's alias of /v1/batch) is published with the batch's body and answers;
    the one-letter analytics.js aliases are not part of Segment's HTTP API and stay out."""
    spec = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    batch = spec["paths"]["/v1/batch"]["post"]
    imported = spec["paths"]["/v1/import"]["post"]
    assert imported["operationId"] == "v1_import" and batch["operationId"] == "v1_batch"
    assert imported["requestBody"] == batch["requestBody"]
    assert imported["responses"] == batch["responses"]
    assert imported["security"] == batch["security"]
    assert not {f"/v1/{letter}" for letter in "tpsiga"} & set(spec["paths"])
