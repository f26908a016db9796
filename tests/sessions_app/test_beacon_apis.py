"""The unload beacon: POST .../events as text/plain with the session token in the body."""

from __future__ import annotations

import uuid
from datetime import timedelta

import orjson
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from sessions_app.models import BehaviorEvent
from tests.conftest import IPHONE_UA
from tests.sessions_app.factories import UserSessionFactory

pytestmark = pytest.mark.django_db


def beacon(session_id, body, *, content_type: str = "text/plain;charset=UTF-8", client: APIClient | None = None):
    client = client or APIClient(REMOTE_ADDR="81.2.69.142", HTTP_USER_AGENT=IPHONE_UA)
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(f"/api/sessions/{session_id}/events", raw, content_type=content_type)


def session_with_token(**kwargs):
    token = uuid.uuid4().hex + uuid.uuid4().hex
    return UserSessionFactory(factory_token=token, **kwargs), token


def batch(n: int = 2) -> list[dict]:
    return [{"eventType": "click", "eventName": f"e{i}", "messageId": str(uuid.uuid4())} for i in range(n)]


def test_beacon_with_token_in_text_body_stores_the_batch():
    """sendBeacon's shape (text/plain, token in the body) is stored like a normal batch."""
    session, token = session_with_token()
    events = batch(3)
    response = beacon(session.public_id, {"token": token, "sentAt": timezone.now().isoformat(), "events": events})
    assert response.status_code == 200, response.content
    assert response.json()["stored"] == 3
    stored = BehaviorEvent.objects.filter(session=session)
    assert sorted(stored.values_list("message_id", flat=True)) == sorted(e["messageId"] for e in events)


def test_repeated_beacon_is_stored_once():
    """A beacon resent after a lost answer counts as duplicates."""
    session, token = session_with_token()
    body = {"token": token, "events": batch(2)}
    assert beacon(session.public_id, body).json()["stored"] == 2
    assert beacon(session.public_id, body).json() == {"stored": 0, "duplicates": 2, "anonymous": 0}
    assert BehaviorEvent.objects.count() == 2


def test_beacon_with_wrong_token_is_401_and_stores_nothing():
    session, _ = session_with_token()
    response = beacon(session.public_id, {"token": "not-the-token", "events": batch()})
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert BehaviorEvent.objects.count() == 0


@pytest.mark.parametrize("token", [123, None, ["t"], {"t": 1}])
def test_beacon_token_that_is_not_a_string_is_401(token):
    session, _ = session_with_token()
    assert beacon(session.public_id, {"token": token, "events": batch()}).status_code == 401
    assert BehaviorEvent.objects.count() == 0


def test_beacon_without_token_is_401():
    session, _ = session_with_token()
    assert beacon(session.public_id, {"events": batch()}).status_code == 401


def test_token_in_a_json_body_is_not_accepted():
    """Only the beacon's text/plain carries a body token; JSON callers use the header."""
    session, token = session_with_token()
    response = beacon(session.public_id, {"token": token, "events": batch()}, content_type="application/json")
    assert response.status_code == 401
    assert BehaviorEvent.objects.count() == 0


def test_beacon_token_of_another_session_is_404():
    """A token opens its own session only, in the body as in the header."""
    session, _ = session_with_token()
    other, other_token = session_with_token(neuron=session.neuron)
    response = beacon(session.public_id, {"token": other_token, "events": batch()})
    assert response.status_code == 404
    assert BehaviorEvent.objects.count() == 0


def test_header_token_with_a_body_token_is_400_unknown_field():
    """With the header present the body token is just an unknown field."""
    session, token = session_with_token()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = beacon(session.public_id, {"token": token, "events": batch()}, client=client)
    assert response.status_code == 400
    assert "token" in response.json()["errors"]


def test_malformed_beacon_body_is_400():
    session, _ = session_with_token()
    assert beacon(session.public_id, b'{"token": "x", "events": [').status_code == 400


def test_invalid_event_in_a_beacon_is_400_naming_it():
    session, token = session_with_token()
    response = beacon(session.public_id, {"token": token, "events": [{"eventType": "Bad Type"}]})
    assert response.status_code == 400
    assert "events[0].eventType" in response.json()["errors"]
    assert BehaviorEvent.objects.count() == 0


def test_oversized_beacon_is_413(settings):
    settings.EVENTS_MAX_BODY_BYTES = 2048
    session, token = session_with_token()
    response = beacon(session.public_id, {"token": token, "events": [{"eventType": "x", "eventName": "y" * 3000}]})
    assert response.status_code == 413


def test_beacon_within_the_grace_period_after_the_end_is_accepted():
    """The unload beacon of a session that just ended still lands."""
    now = timezone.now()
    session, token = session_with_token(ended_at=now - timedelta(seconds=30), expires_at=now - timedelta(seconds=30))
    assert beacon(session.public_id, {"token": token, "events": batch(1)}).status_code == 200


def test_beacon_long_after_the_end_is_409():
    """Past the grace period the client must restore; nothing is stored."""
    past = timezone.now() - timedelta(hours=1)
    session, token = session_with_token(started_at=past, ended_at=past, expires_at=past)
    assert beacon(session.public_id, {"token": token, "events": batch(1)}).status_code == 409
    assert BehaviorEvent.objects.count() == 0


def test_beacon_without_analytics_consent_is_counted_anonymously():
    """Consent gates the beacon like any batch: no rows, only anonymous counts."""
    session, token = session_with_token(consent={"analytics": False})
    response = beacon(session.public_id, {"token": token, "events": batch(2)})
    assert response.status_code == 200
    assert response.json()["anonymous"] == 2
    assert BehaviorEvent.objects.count() == 0
