"""JSON numbers past 64 bits in stored documents never break a read, an export or a response.

A client sends `1e20`: the parser makes it a float; PostgreSQL's jsonb keeps it as the exact numeric
100000000000000000000 and returns it as an integer literal, which a plain `json.loads` turns into a
Python int that orjson cannot render ("Integer exceeds 64-bit range"), a permanent 500 on every later
read. The project's JSONFields decode with `config.api.json_numbers.JSONDecoder` instead, and the
renderer turns any such integer into a float as a last resort. On SQLite `1e20` stays a float text
and most of these pass either way; the raw-SQL cases (a literal stored by anything else) fail there
too without the decoder.
"""

from __future__ import annotations

import json
import sys

import orjson
import pytest
from django.db import connection
from django.test import Client

from config.api.json_numbers import INT_MAX, INT_MIN, JSONDecoder, json_safe, parse_float, parse_int
from config.api.renderers import JSONRenderer
from personalization.models import Segment
from privacy.audit import audit_verify
from privacy.dsar import dsar_create, dsar_document, dsar_run
from sessions_app.models import BehaviorEvent, UserSession
from tests.helpers import assert_problem

pytestmark = pytest.mark.django_db

ADMIN_LIST = "/api/sessions/admin/sessions"
SEGMENTS = "/api/personalization/segments"
HUGE_LITERAL = b"1" + b"0" * 399  # 400 digits: past the float range too
FLOAT_MAX = sys.float_info.max
GRANTED = {"consent": {"categoryPreferences": {"Analytics": True, "Personalization": True}}}


def send(client, method: str, path: str, body: bytes):
    """Raw JSON text, so the number's literal form (1e20, a 400-digit integer) is what the server parses."""
    return getattr(client, method)(path, body, content_type="application/json")


def session_put(live_session, body: bytes):
    client, created = live_session
    return send(client, "put", f"/api/sessions/{created['sessionId']}", body)


def session_get(live_session):
    client, created = live_session
    return client.get(f"/api/sessions/{created['sessionId']}")


def store_raw(table: str, column: str, pk: int, document: str) -> None:
    """What another writer (a migration, psql, an older release) may have left in a row."""
    cast = "::jsonb" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {column} = %s{cast} WHERE id = %s", [document, pk])


def track(properties: bytes) -> bytes:
    context = orjson.dumps(GRANTED)
    return (
        b'{"anonymousId":"anon-big","event":"Clicked Buy","messageId":"m1","context":'
        + context
        + (b',"properties":' + properties + b"}")
    )


def post_v1(neuron, body: bytes):
    import base64

    auth = "Basic " + base64.b64encode(f"{neuron.publishable_key}:".encode()).decode()
    return Client(REMOTE_ADDR="203.0.113.9").post(
        "/v1/track", body, content_type="application/json", HTTP_AUTHORIZATION=auth
    )


def export_completes(subject_type: str, value: str) -> dict:
    request, _ = dsar_create(kind="export", value=value, subject_type=subject_type, requested_by="staff")
    done = dsar_run(request_id=request.pk)
    assert done.status == "completed", done.error
    return dsar_document(done)


# --- the decoder and the renderer ------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("0", 0),
        ("18446744073709551615", INT_MAX),  # 2**64 - 1: orjson renders it
        ("-9223372036854775808", INT_MIN),  # -2**63
        ("18446744073709551616", float(2**64)),
        ("-9223372036854775809", float(-(2**63) - 1)),
        ("100000000000000000000", 1e20),
        ("-100000000000000000000", -1e20),
        ("1" + "0" * 300, 1e300),
        ("1" + "0" * 399, FLOAT_MAX),
        ("-1" + "0" * 399, -FLOAT_MAX),
        ("1" * 5000, FLOAT_MAX),  # past Python's int digit limit: int() itself would raise
    ],
)
def test_parse_int_keeps_what_orjson_renders_and_makes_the_rest_finite_floats(literal, expected):
    value = parse_int(literal)
    assert value == expected and type(value) is type(expected)
    assert json.loads(f'{{"x": {literal}}}', cls=JSONDecoder) == {"x": expected}
    orjson.dumps(value)


@pytest.mark.parametrize(
    ("literal", "expected"), [("1.5", 1.5), ("1e400", FLOAT_MAX), ("-1e400", -FLOAT_MAX), ("1e-400", 0.0)]
)
def test_parse_float_never_makes_an_infinity(literal, expected):
    assert parse_float(literal) == expected


def test_the_plain_decoder_is_built_once_and_one_with_options_as_usual():
    assert JSONDecoder() is JSONDecoder()
    hooked = JSONDecoder(object_hook=lambda d: sorted(d))
    assert hooked is not JSONDecoder()
    assert json.loads('{"b": 1, "a": 1e400}', cls=JSONDecoder) == {"b": 1, "a": FLOAT_MAX}
    assert hooked.decode('{"b": 100000000000000000000, "a": 1}') == ["a", "b"]


def test_json_safe_and_the_renderer_turn_wide_integers_into_floats():
    data = {"a": 2**70, "b": [-(2**64), {"c": 10**400}], "d": (1, True), 5: "k"}
    assert json_safe(data) == {"a": float(2**70), "b": [float(-(2**64)), {"c": FLOAT_MAX}], "d": [1, True], 5: "k"}
    rendered = orjson.loads(JSONRenderer().render(data))
    assert rendered == {"a": float(2**70), "b": [float(-(2**64)), {"c": FLOAT_MAX}], "d": [1, True], "5": "k"}


def test_the_renderer_still_refuses_what_is_not_json():
    with pytest.raises(TypeError):
        JSONRenderer().render({"x": object()})


# --- sessions: metadata and traits -----------------------------------------------------------


@pytest.mark.parametrize("field", ["metadata", "traits"])
@pytest.mark.parametrize(("literal", "expected"), [(b"1e20", 1e20), (b"-1e20", -1e20), (b"1e300", 1e300)])
def test_a_session_keeps_answering_after_a_huge_number_is_stored(live_session, staff_client, field, literal, expected):
    """PUT stores it; GET, a second PUT and the staff list all answer 200 with the number as a float."""
    response = session_put(live_session, b'{"' + field.encode() + b'":{"x":' + literal + b"}}")
    assert response.status_code == 200, response.content
    assert response.json()[field]["x"] == expected

    read = session_get(live_session)
    assert read.status_code == 200, read.content
    assert read.json()[field] == {"x": expected}

    again = session_put(live_session, b'{"' + field.encode() + b'":{"y":1}}')
    assert again.status_code == 200, again.content
    assert again.json()[field] == {"x": expected, "y": 1}

    listed = staff_client.get(ADMIN_LIST)
    assert listed.status_code == 200, listed.content
    if field == "metadata":
        (row,) = listed.json()["results"]
        assert row["metadata"] == {"x": expected, "y": 1}


def test_a_400_digit_integer_is_a_400_not_a_500(live_session):
    """orjson refuses a number past the float range: a malformed-JSON 400, nothing stored."""
    assert_problem(session_put(live_session, b'{"metadata":{"x":' + HUGE_LITERAL + b"}}"), 400)
    assert_problem(session_put(live_session, b'{"metadata":{"x":1e400}}'), 400)
    client, created = live_session
    events = f"/api/sessions/{created['sessionId']}/events"
    assert_problem(send(client, "post", events, b'{"eventType":"click","eventData":{"x":' + HUGE_LITERAL + b"}}"), 400)
    assert UserSession.objects.get(public_id=created["sessionId"]).metadata == {}
    assert not BehaviorEvent.objects.exists()


@pytest.mark.parametrize("literal", [HUGE_LITERAL, b"-" + HUGE_LITERAL, b"100000000000000000000", b"1e400"])
def test_a_huge_literal_already_in_the_database_is_read_as_a_finite_float(live_session, staff_client, literal):
    """Written by anything but this API (psql, a migration): every read still answers 200."""
    session = UserSession.objects.get(public_id=live_session[1]["sessionId"])
    store_raw(UserSession._meta.db_table, "metadata", session.pk, '{"x": ' + literal.decode() + "}")
    read = session_get(live_session)
    assert read.status_code == 200, read.content
    value = read.json()["metadata"]["x"]
    assert isinstance(value, float) and abs(value) <= FLOAT_MAX and value != 0
    assert staff_client.get(ADMIN_LIST).status_code == 200
    assert session_put(live_session, b'{"metadata":{"y":1}}').status_code == 200
    assert UserSession.objects.get(pk=session.pk).metadata == {"x": value, "y": 1}


# --- events, /v1/track and the GDPR export ---------------------------------------------------


@pytest.mark.parametrize(("literal", "expected"), [(b"1e20", 1e20), (b"-1e20", -1e20)])
def test_an_event_with_a_huge_number_leaves_the_export_working(live_session, literal, expected):
    client, created = live_session
    events = f"/api/sessions/{created['sessionId']}/events"
    body = b'{"eventType":"click","eventName":"buy","eventData":{"price":' + literal + b"}}"
    response = send(client, "post", events, body)
    assert response.status_code in (200, 201), response.content
    assert BehaviorEvent.objects.get().properties == {"price": expected}

    document = export_completes("anonymousId", created["anonymousId"])
    (row,) = document["tables"]["sessions_app.BehaviorEvent"]["rows"]
    assert row["properties"] == {"price": expected}


def test_track_properties_with_a_huge_number_leave_the_export_working(neuron, staff_client):
    response = post_v1(neuron, track(b'{"price":1e20,"debt":-1e20,"tiny":1e-20}'))
    assert response.status_code == 200, response.content
    assert BehaviorEvent.objects.get().properties == {"price": 1e20, "debt": -1e20, "tiny": 1e-20}
    assert staff_client.get(ADMIN_LIST).status_code == 200

    document = export_completes("anonymousId", "anon-big")
    (row,) = document["tables"]["sessions_app.BehaviorEvent"]["rows"]
    assert row["properties"] == {"price": 1e20, "debt": -1e20, "tiny": 1e-20}


def test_track_with_a_400_digit_integer_is_a_400(neuron):
    assert_problem(post_v1(neuron, track(b'{"price":' + HUGE_LITERAL + b"}")), 400)
    assert not BehaviorEvent.objects.exists()


def test_a_huge_literal_already_stored_in_an_event_leaves_the_export_working(live_session):
    client, created = live_session
    send(client, "post", f"/api/sessions/{created['sessionId']}/events", b'{"eventType":"click"}')
    event = BehaviorEvent.objects.get()
    store_raw(BehaviorEvent._meta.db_table, "properties", event.pk, '{"x": ' + HUGE_LITERAL.decode() + "}")
    document = export_completes("anonymousId", created["anonymousId"])
    (row,) = document["tables"]["sessions_app.BehaviorEvent"]["rows"]
    assert row["properties"] == {"x": FLOAT_MAX}


# --- segment rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(("literal", "expected"), [(b"1e20", 1e20), (b"1e300", 1e300), (b"-1e20", -1e20)])
def test_a_segment_rule_with_a_huge_number_lists_reads_and_audits(staff_client, neuron, literal, expected):
    rule = b'{"all":[{"field":"trait.score","op":"gt","value":' + literal + b"}]}"
    body = b'{"neuronId":"' + neuron.slug.encode() + b'","name":"Big spenders","rule":' + rule + b"}"
    created = send(staff_client, "post", SEGMENTS, body)
    assert created.status_code == 201, created.content

    listed = staff_client.get(SEGMENTS)
    assert listed.status_code == 200, listed.content
    (item,) = listed.json()["results"]
    assert item["rule"]["all"][0]["value"] == expected
    detail = staff_client.get(f"{SEGMENTS}/{created.json()['id']}")
    assert detail.status_code == 200, detail.content
    assert Segment.objects.get().rule["all"][0]["value"] == expected
    # The audit entry holds the rule too; its hash must match what the database gives back.
    report = audit_verify()
    assert report.ok, report.problems


def test_a_segment_rule_with_a_400_digit_integer_is_a_400(staff_client, neuron):
    rule = b'{"all":[{"field":"trait.score","op":"gt","value":' + HUGE_LITERAL + b"}]}"
    body = b'{"neuronId":"' + neuron.slug.encode() + b'","name":"Big spenders","rule":' + rule + b"}"
    assert_problem(send(staff_client, "post", SEGMENTS, body), 400)
    assert not Segment.objects.exists()
