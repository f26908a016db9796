"""GET /api/sessions/audit-log and GET /api/sessions/privacy-report."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from privacy.audit import audit_log
from privacy.dsar import dsar_create
from privacy.models import AuditEntry
from privacy.selectors import privacy_report_site
from tests.sessions_app.factories import BehaviorEventFactory, UserSessionFactory

pytestmark = pytest.mark.django_db

AUDIT = "/api/sessions/audit-log"
REPORT = "/api/sessions/privacy-report"


def _log(n: int, **kwargs):
    for i in range(n):
        audit_log(actor=kwargs.get("actor", "system"), action=kwargs.get("action", "x.y"), subject=f"s:{i}")


# --- audit log -------------------------------------------------------------------------------


def test_audit_log_lists_newest_first_with_hashes(staff_client):
    _log(3)
    body = staff_client.get(AUDIT).json()
    assert [e["seq"] for e in body["results"]] == [3, 2, 1]
    first = body["results"][-1]
    assert set(first) == {"seq", "createdAt", "actor", "action", "subject", "details", "prevHash", "entryHash"}
    assert first["prevHash"] == "0" * 64


def test_audit_log_filters_by_actor_action_subject_and_time(staff_client):
    start = timezone.now()
    with time_machine.travel(start - timedelta(days=3), tick=False):
        audit_log(actor="alice", action="dsar.erase.requested", subject="dsar:1")
    audit_log(actor="bob", action="dsar.export.requested", subject="dsar:2")
    audit_log(actor="bob", action="retention.run", subject="retention")

    def seqs(query):
        response = staff_client.get(AUDIT, query)
        assert response.status_code == 200, response.content
        return [e["seq"] for e in response.json()["results"]]

    assert seqs({"actor": "bob"}) == [3, 2]
    assert seqs({"action": "retention.run"}) == [3]
    assert seqs({"actionPrefix": "dsar."}) == [2, 1]
    assert seqs({"subject": "dsar:1"}) == [1]
    assert seqs({"since": (start - timedelta(days=1)).isoformat()}) == [3, 2]
    assert seqs({"until": (start - timedelta(days=1)).isoformat()}) == [1]
    # Any ISO 8601 offset, even beyond PostgreSQL's ±15:59, is compared as its UTC instant.
    far_west = (start - timedelta(days=1)).astimezone(timezone.get_fixed_timezone(-(17 * 60 + 25)))
    assert seqs({"since": far_west.isoformat()}) == [3, 2]


def test_audit_log_is_paginated_with_a_constant_number_of_queries(staff_client, django_assert_num_queries):
    _log(30)
    # Session auth: session + user; then the page.
    with django_assert_num_queries(1):
        body = staff_client.get(AUDIT, {"pageSize": 10}).json()
    assert len(body["results"]) == 10 and body["next"]
    second = staff_client.get(body["next"]).json()
    assert [e["seq"] for e in second["results"]] == list(range(20, 10, -1))


def test_audit_log_bad_time_filter_is_400(staff_client):
    response = staff_client.get(AUDIT, {"since": "yesterday"})
    assert response.status_code == 400
    assert "since" in response.json()["errors"]


def test_audit_log_is_staff_only(api_client, live_session, db, django_user_model):
    """Anonymous, a visitor's token, and a non-staff user are all refused."""
    assert api_client.get(AUDIT).status_code in (401, 403)
    client, _ = live_session
    assert client.get(AUDIT).status_code in (401, 403)
    user = django_user_model.objects.create_user("clerk", password="pw-clerk-123")
    other = APIClient()
    other.force_authenticate(user)
    response = other.get(AUDIT)
    assert response.status_code == 403 and response["Content-Type"] == "application/problem+json"


# --- privacy report --------------------------------------------------------------------------


def test_visitor_report_shows_what_is_held_consents_and_deletion_dates(live_session):
    """With a session token: rows per table, the consent with its source, and when data goes."""
    client, body = live_session
    sid = body["sessionId"]
    client.post(f"/api/sessions/{sid}/events", {"events": [{"eventType": "page_view"}] * 3}, format="json")
    report = client.get(REPORT).json()
    assert report["subject"]["sessionId"] == sid
    assert report["held"]["sessions_app.BehaviorEvent"]["rows"] == 3
    assert report["held"]["sessions_app.UserSession"]["rows"] == 1
    assert report["consent"]["analytics"]["granted"] is True
    assert report["consent"]["analytics"]["source"] == "api"
    assert report["consent"]["marketing"] == {
        "granted": False,
        "source": "default",
        "recordedAt": None,
        "policyVersion": "",
    }
    events = report["deletion"]["sessions_app.BehaviorEvent"]
    assert events["dataType"] == "events" and events["retentionDays"] == 395
    assert events["nextDeletionAt"] > (timezone.now() + timedelta(days=394)).isoformat()


def test_visitor_report_never_shows_other_visitors(live_session):
    client, _ = live_session
    BehaviorEventFactory.create_batch(4)
    assert client.get(REPORT).json()["held"]["sessions_app.BehaviorEvent"]["rows"] == 0


def test_staff_report_summarises_consent_requests_retention_and_the_chain(staff_client):
    UserSessionFactory.create_batch(3, consent={"analytics": True, "marketing": False})
    UserSessionFactory(consent={"analytics": False})
    session = UserSessionFactory(consent={"analytics": True})
    dsar_create(kind="export", value=str(session.public_id), subject_type="sessionId", requested_by="staff")
    report = staff_client.get(REPORT).json()
    assert report["consentRates"]["sessions"] == 5
    assert report["consentRates"]["rates"]["analytics"] == pytest.approx(0.8)
    assert report["consentRates"]["rates"]["marketing"] == 0
    assert report["requests"]["byStatus"] == {"pending": 1}
    assert report["requests"]["open"][0]["kind"] == "export"
    assert report["requests"]["oldestOpenAgeSeconds"] >= 0
    assert {r["dataType"] for r in report["retention"]} >= {"events", "audit_log"}
    assert report["auditChain"]["ok"] is True and report["auditChain"]["checked"] == 1


def test_site_report_counts_consent_over_a_chosen_window_with_gpc(db):
    """The dashboard asks for its own range; granted counts and GPC signals come with the rates."""
    UserSessionFactory(consent={"analytics": True}, gpc=True)
    UserSessionFactory(consent={"analytics": False}, started_at=timezone.now() - timedelta(days=3))
    day = privacy_report_site(window=timedelta(days=1))["consentRates"]
    assert day["windowDays"] == 1 and day["sessions"] == 1 and day["gpc"] == 1
    assert day["granted"]["analytics"] == 1 and day["rates"]["analytics"] == 1.0
    month = privacy_report_site()["consentRates"]
    assert month["windowDays"] == 30 and month["sessions"] == 2 and month["rates"]["analytics"] == 0.5
    hours = privacy_report_site(window=timedelta(hours=12))["consentRates"]
    assert hours["windowDays"] == 0.5


def test_staff_report_shows_a_broken_chain(staff_client):
    _log(2)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("UPDATE privacy_audit_log SET actor = 'mallory' WHERE seq = 1")
    chain = staff_client.get(REPORT).json()["auditChain"]
    assert chain["ok"] is False and "entry #1" in chain["problems"][0]
    assert AuditEntry.objects.count() == 2


def test_privacy_report_needs_credentials(api_client, db, django_user_model):
    response = api_client.get(REPORT)
    assert response.status_code == 401 and response["Content-Type"] == "application/problem+json"
    user = django_user_model.objects.create_user("clerk", password="pw-clerk-123")
    client = APIClient()
    client.force_authenticate(user)
    assert client.get(REPORT).status_code == 403


def test_privacy_report_of_an_ended_session_is_401(live_session):
    client, body = live_session
    client.post(f"/api/sessions/{body['sessionId']}/end")
    assert client.get(REPORT).status_code == 401
