"""POST /api/sessions/consent, the session API's ledger entries, and /.well-known/gpc.json."""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from privacy.models import AuditEntry, ConsentRecord
from sessions_app.models import BehaviorEvent, UserSession
from tests.conftest import IPHONE_UA
from tests.helpers import assert_problem
from tests.sessions_app.factories import UserSessionFactory

pytestmark = pytest.mark.django_db

URL = "/api/sessions/consent"


def test_visitor_grants_and_withdraws_with_the_same_call(live_session):
    """Grant and withdraw are one endpoint; the answer is the new consent."""
    client, body = live_session
    granted = client.post(
        URL,
        {"consent": {"personalization": True}, "policyVersion": "v7", "textHash": "b" * 64, "source": "banner"},
        format="json",
    )
    assert granted.status_code == 200, granted.content
    assert granted.json()["consent"]["personalization"] is True
    assert granted.json()["recorded"] == ["personalization"]
    withdrawn = client.post(URL, {"consent": {"personalization": False, "analytics": False}}, format="json")
    assert withdrawn.status_code == 200
    assert withdrawn.json()["consent"]["personalization"] is False and withdrawn.json()["consent"]["analytics"] is False
    session = UserSession.objects.get(public_id=body["sessionId"])
    assert session.consent["analytics"] is False
    record = ConsentRecord.objects.filter(session=session, source="banner").get()
    assert record.policy_version == "v7" and record.text_hash == "b" * 64


def test_withdrawn_analytics_stops_event_rows_at_once(live_session):
    """After withdrawal, the rows stored before are gone and events are only counted anonymously."""
    client, body = live_session
    sid = body["sessionId"]
    assert client.post(f"/api/sessions/{sid}/events", {"eventType": "page_view"}, format="json").json()["stored"] == 1
    client.post(URL, {"consent": {"analytics": False}}, format="json")
    assert not BehaviorEvent.objects.filter(session__public_id=sid).exists()
    after = client.post(f"/api/sessions/{sid}/events", {"eventType": "page_view"}, format="json").json()
    assert after["stored"] == 0 and after["anonymous"] == 1
    assert not BehaviorEvent.objects.filter(session__public_id=sid).exists()


def test_session_create_records_the_consent_it_carries(site_client):
    """The banner's answer at session start is in the ledger."""
    body = site_client.post("/api/sessions/create", {"consent": {"trackingConsent": True}}, format="json").json()
    rows = ConsentRecord.objects.filter(session__public_id=body["sessionId"])
    assert list(rows.values_list("purpose", "granted", "source")) == [("analytics", True, "api")]


def test_session_create_ledger_rows_carry_the_proof(site_client, neuron, django_assert_max_num_queries):
    """Each decided purpose is a row with the session, visitor, site, truncated network, user agent
    and time; on PostgreSQL the session and its rows are one statement (no transaction block)."""
    from django.db import connection

    payload = {"anonymousId": "visitor-7", "consent": {"analytics": True, "marketing": False}}
    site_client.post("/api/sessions/create", {}, format="json")  # the site key is cached from now on
    # The erasure check for the given anonymous id, then the insert (four with BEGIN/COMMIT elsewhere).
    with django_assert_max_num_queries(2 if connection.vendor == "postgresql" else 6):
        response = site_client.post("/api/sessions/create", payload, format="json")
    assert response.status_code == 201, response.content
    session = UserSession.objects.get(public_id=response.json()["sessionId"])
    rows = ConsentRecord.objects.filter(session=session).order_by("purpose")
    assert [(r.purpose, r.granted) for r in rows] == [("analytics", True), ("marketing", False)]
    for row in rows:
        assert (row.neuron_id, row.anonymous_id, row.source) == (neuron.pk, "visitor-7", "api")
        assert row.profile_id is None and row.policy_version == "" and row.recorded_by == ""
        assert row.ip_truncated == "81.2.69.0" == session.ip_truncated
        assert row.user_agent == IPHONE_UA
        assert row.recorded_at == session.started_at
        assert list(row.controllers.values_list("pk", flat=True)) == [neuron.pk]


def test_session_create_without_decisions_writes_no_ledger_rows(site_client):
    body = site_client.post("/api/sessions/create", {}, format="json").json()
    assert UserSession.objects.filter(public_id=body["sessionId"]).exists()
    assert not ConsentRecord.objects.filter(session__public_id=body["sessionId"]).exists()


def test_session_update_records_consent_changes(live_session):
    """PUT /api/sessions/{id} with consent appends to the ledger."""
    client, body = live_session
    client.put(f"/api/sessions/{body['sessionId']}", {"consent": {"marketing": True}}, format="json")
    rows = ConsentRecord.objects.filter(session__public_id=body["sessionId"], purpose="marketing", granted=True)
    assert rows.exists()


def test_gpc_header_at_session_create_is_recorded_with_source_gpc(site_client):
    """Sec-GPC: 1 is recorded as a saleSharing opt-out from the gpc source."""
    body = site_client.post("/api/sessions/create", {}, format="json", HTTP_SEC_GPC="1").json()
    record = ConsentRecord.objects.get(session__public_id=body["sessionId"])
    assert (record.purpose, record.granted, record.source) == ("saleSharing", False, "gpc")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "consent"),
        ({"consent": {}}, "consent"),
        ({"consent": {"analytics": "yes"}}, "consent.analytics"),
        ({"consent": {"tracking": True}}, "consent.tracking"),
        ({"consent": {"analytics": True}, "textHash": "not-a-hash"}, "textHash"),
        ({"consent": {"analytics": True}, "source": "gpc"}, "source"),
        ({"consent": {"analytics": True}, "extra": 1}, "extra"),
        ({"consent": {"analytics": True}, "policyVersion": 3}, "policyVersion"),
    ],
)
def test_malformed_consent_payloads_are_400(live_session, payload, field):
    """Each bad field is named; nothing is recorded."""
    client, _ = live_session
    before = ConsentRecord.objects.count()
    body = assert_problem(client.post(URL, payload, format="json"), 400)
    assert field in body["errors"]
    assert ConsentRecord.objects.count() == before


def test_malformed_json_is_400(live_session):
    client, _ = live_session
    assert_problem(client.post(URL, b'{"consent":', content_type="application/json"), 400)


def test_consent_without_credentials_is_401(api_client):
    """No token, no consent change."""
    response = api_client.post(URL, {"consent": {"analytics": True}}, format="json")
    assert_problem(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_consent_with_a_bad_token_is_401():
    client = APIClient(HTTP_USER_AGENT=IPHONE_UA)
    client.credentials(HTTP_AUTHORIZATION="Bearer nope")
    assert_problem(client.post(URL, {"consent": {"analytics": True}}, format="json"), 401)


def test_a_token_cannot_change_another_sessions_consent(live_session):
    """Naming another session with your token is a 404."""
    client, _ = live_session
    other = UserSessionFactory()
    response = client.post(URL, {"consent": {"analytics": False}, "sessionId": str(other.public_id)}, format="json")
    assert_problem(response, 404)
    assert not ConsentRecord.objects.filter(session=other).exists()


def test_staff_change_a_visitors_consent_and_it_is_audited(staff_client):
    """Staff name the session; the record says admin and the audit log says who."""
    session = UserSessionFactory()
    response = staff_client.post(
        URL, {"consent": {"analytics": False}, "sessionId": str(session.public_id)}, format="json"
    )
    assert response.status_code == 200, response.content
    assert ConsentRecord.objects.get(session=session).source == "admin"
    assert AuditEntry.objects.filter(action="consent.change", subject=f"session:{session.public_id}").exists()


def test_staff_must_name_an_existing_session(staff_client):
    assert (
        "sessionId"
        in assert_problem(staff_client.post(URL, {"consent": {"analytics": True}}, format="json"), 400)["errors"]
    )
    response = staff_client.post(URL, {"consent": {"analytics": True}, "sessionId": str(uuid.uuid4())}, format="json")
    assert_problem(response, 404)


def test_non_staff_user_is_403(db, django_user_model):
    """A logged-in operator without staff rights cannot change consent."""
    user = django_user_model.objects.create_user("clerk", password="pw-clerk-123")
    client = APIClient()
    client.force_authenticate(user)
    session = UserSessionFactory()
    response = client.post(URL, {"consent": {"analytics": True}, "sessionId": str(session.public_id)}, format="json")
    assert_problem(response, 403)


def test_gpc_well_known_resource(client):
    """/.well-known/gpc.json says the site honours GPC."""
    response = client.get("/.well-known/gpc.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["gpc"] is True and len(body["lastUpdate"]) == 10
