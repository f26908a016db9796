"""Dashboard pages: staff only, explorer filters and keyset pages, the session page."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from privacy.audit import audit_log
from privacy.dsar import dsar_create
from sessions_app.models import BridgeMethod, BridgeStatus, SessionBridge
from tests.federation.factories import NeuronFactory
from tests.sessions_app.factories import BehaviorEventFactory, GlobalUserProfileFactory, UserSessionFactory

pytestmark = pytest.mark.django_db

PAGES = ["/dashboard/", "/dashboard/sessions/", "/dashboard/privacy/"]
READ_ONLY_PAGES = [
    *PAGES,
    "/dashboard/sessions/{session}/",
    "/dashboard/funnels/",
    "/dashboard/journeys/",
    "/dashboard/retention/",
    "/dashboard/segments/",
]


@pytest.fixture
def operator_client(staff_user):
    client = Client()
    client.force_login(staff_user)
    return client


def session_ids_on(html: str) -> list[str]:
    return re.findall(r'href="/dashboard/sessions/([0-9a-f-]{36})/"', html)


@pytest.mark.parametrize("url", PAGES)
def test_pages_send_anonymous_visitors_to_the_login(client, url):
    """Without a staff login every page redirects to the admin login."""
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("url", PAGES)
def test_pages_refuse_non_staff_users(client, django_user_model, url):
    """A logged-in user who is not staff is sent to log in as staff too."""
    client.force_login(django_user_model.objects.create_user("visitor", "v@example.com", "pw-visitor-1"))
    assert client.get(url).status_code == 302


@pytest.mark.parametrize("url", PAGES)
def test_pages_render_for_staff_with_their_charts_and_scripts(operator_client, url):
    """Each page renders and loads the charting library from staticfiles, not a CDN."""
    UserSessionFactory()
    response = operator_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert '<script src="/static/vendor/echarts/echarts.min.js"' in html
    assert "://cdn" not in html and "unpkg" not in html


def test_charting_library_is_served_from_the_npm_install(client):
    """The ECharts build installed by npm ci is reachable through staticfiles."""
    response = client.get("/static/vendor/echarts/echarts.min.js")
    assert response.status_code == 200
    assert b"echarts" in b"".join(response.streaming_content)[:5000]


def test_overview_lists_top_pages_of_the_last_half_hour(operator_client):
    """Top pages count recent page views only."""
    session = UserSessionFactory()
    for _ in range(3):
        BehaviorEventFactory(session=session, page_path="/pricing")
    BehaviorEventFactory(session=session, page_path="/old", timestamp=timezone.now() - timedelta(hours=2))
    html = operator_client.get("/dashboard/").content.decode()
    assert "/pricing" in html and "/old" not in html
    assert 'id="live"' in html


def test_explorer_filters_sessions(operator_client):
    """The explorer's django-filter form narrows the table."""
    shop = NeuronFactory(slug="shop")
    mobile = UserSessionFactory(neuron=shop, device_type="mobile", country="FR")
    UserSessionFactory(neuron=shop, device_type="desktop", country="FR")
    UserSessionFactory(device_type="mobile", country="FR")
    html = operator_client.get("/dashboard/sessions/?neuron=shop&device=mobile&country=fr").content.decode()
    assert session_ids_on(html) == [str(mobile.public_id)]


def test_explorer_shows_filter_errors_instead_of_failing(operator_client):
    """A bad filter value is reported next to the field; nothing is listed."""
    UserSessionFactory()
    response = operator_client.get("/dashboard/sessions/?startedAfter=tomorrowish&device=fridge")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Fix the filters" in html and session_ids_on(html) == []


def test_explorer_pages_by_keyset_without_repeats_or_gaps(operator_client, monkeypatch):
    """Older/Newer links walk every session once, even as new sessions arrive."""
    from analytics import dashboard_views

    monkeypatch.setattr(dashboard_views, "PAGE_SIZE", 4)
    sessions = [UserSessionFactory() for _ in range(10)]
    seen: list[str] = []
    url = "/dashboard/sessions/"
    pages = []
    while url:
        html = operator_client.get(url).content.decode()
        pages.append(html)
        seen += session_ids_on(html)
        UserSessionFactory()  # arrives while the operator reads
        older = re.search(r'href="\?([^"]*after=\d+)" data-testid="older"', html)
        url = f"/dashboard/sessions/?{older.group(1).replace('&amp;', '&')}" if older else None
    assert seen == [str(s.public_id) for s in reversed(sessions)]

    newer = re.search(r'href="\?([^"]*before=\d+)"', pages[1]).group(1).replace("&amp;", "&")
    back = session_ids_on(operator_client.get(f"/dashboard/sessions/?{newer}").content.decode())
    assert back == seen[:4]


def test_explorer_keeps_filters_in_export_links(operator_client):
    """The export links carry the active filters."""
    UserSessionFactory.create_batch(2, country="IT")
    html = operator_client.get("/dashboard/sessions/?country=IT").content.decode()
    assert "/api/sessions/admin/export?format=csv&country=IT" in html


def test_explorer_page_costs_a_fixed_number_of_queries(operator_client, django_assert_max_num_queries):
    """Listing 50 sessions does not query once per row."""
    for _ in range(50):
        UserSessionFactory(profile=GlobalUserProfileFactory())
    with django_assert_max_num_queries(6):
        response = operator_client.get("/dashboard/sessions/")
    assert len(session_ids_on(response.content.decode())) == 50


def test_session_page_shows_timeline_journey_consent_and_links(operator_client):
    """The session page has its events in order, the journey, consent and linked devices."""
    profile = GlobalUserProfileFactory(user_id_hash="b" * 64)
    session = UserSessionFactory(profile=profile, consent={"analytics": True, "marketing": False})
    other = UserSessionFactory(neuron=session.neuron, profile=profile, device_type="mobile")
    start = timezone.now() - timedelta(minutes=10)
    for offset, path in enumerate(["/", "/pricing", "/pricing", "/checkout"]):
        BehaviorEventFactory(session=session, page_path=path, timestamp=start + timedelta(minutes=offset))
    BehaviorEventFactory(
        session=session,
        event_type="track",
        event_name="Purchase",
        page_path="/checkout",
        timestamp=start + timedelta(minutes=5),
    )
    SessionBridge.objects.create(
        neuron=session.neuron,
        from_session=session,
        to_session=other,
        method=BridgeMethod.FINGERPRINT,
        confidence=0.82,
        evidence={"fingerprint": "abc123"},
        status=BridgeStatus.SUGGESTED,
    )
    html = operator_client.get(f"/dashboard/sessions/{session.public_id}/").content.decode()
    journey = re.search(r'<ol class="journey">(.*?)</ol>', html, re.S).group(1)
    assert re.findall(r"<li>(.*?)</li>", journey) == ["/", "/pricing", "/checkout"]
    assert "Purchase" in html
    assert "0.82" in html and "fingerprint=abc123" in html
    assert f"/dashboard/sessions/{other.public_id}/" in html
    assert 'id="timeline-data"' in html
    assert "identified" in html


def test_session_page_sends_anonymous_visitors_to_the_login(client):
    """Without a login the session page redirects to the admin login and shows nothing of the visit."""
    session = UserSessionFactory(anonymous_id="visitor-secret-1")
    response = client.get(f"/dashboard/sessions/{session.public_id}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert b"visitor-secret-1" not in response.content


def test_session_page_refuses_non_staff_users(client, django_user_model):
    """A logged-in user who is not staff is sent to the staff login too, for a real session as for a missing one."""
    session = UserSessionFactory(anonymous_id="visitor-secret-1")
    client.force_login(django_user_model.objects.create_user("visitor", "v@example.com", "pw-visitor-1"))
    for url in (f"/dashboard/sessions/{session.public_id}/", f"/dashboard/sessions/{uuid.uuid4()}/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
        assert b"visitor-secret-1" not in response.content


def test_unknown_session_page_is_404(operator_client):
    """An unknown session id is a 404 page."""
    assert operator_client.get(f"/dashboard/sessions/{uuid.uuid4()}/").status_code == 404


def test_privacy_centre_reports_consent_rates(operator_client):
    """Consent rates are privacy's report over the chosen range: the share of its sessions granting each purpose."""
    UserSessionFactory.create_batch(3, consent={"analytics": True, "marketing": True})
    UserSessionFactory(consent={"analytics": True}, gpc=True)
    UserSessionFactory(started_at=timezone.now() - timedelta(days=60), consent={"analytics": False})
    response = operator_client.get("/dashboard/privacy/?range=30d")
    consent = response.context["consent"]
    rows = {r["purpose"]: r for r in response.context["consent_rows"]}
    assert consent["sessions"] == 4 and consent["windowDays"] == 30 and consent["gpc"] == 1
    assert rows["analytics"]["rate"] == 1.0 and rows["marketing"]["rate"] == 0.75 and rows["marketing"]["granted"] == 3
    assert 'id="consent-data"' in response.content.decode()

    day = operator_client.get("/dashboard/privacy/?range=24h").context["consent"]
    assert day["windowDays"] == 1 and day["sessions"] == 4
    UserSessionFactory(started_at=timezone.now() - timedelta(days=2))
    assert operator_client.get("/dashboard/privacy/?range=24h").context["consent"]["sessions"] == 4
    assert operator_client.get("/dashboard/privacy/?range=7d").context["consent"]["sessions"] == 5


def test_privacy_centre_with_no_sessions_draws_zero_rates(operator_client):
    response = operator_client.get("/dashboard/privacy/")
    assert response.status_code == 200
    assert {r["rate"] for r in response.context["consent_rows"]} == {0.0}


def test_privacy_centre_lists_open_requests_retention_and_the_audit_chain(operator_client):
    """The other three panels: open data-subject requests, each retention policy, the chain's verification."""
    session = UserSessionFactory()
    request, _ = dsar_create(
        kind="export", value=str(session.public_id), subject_type="sessionId", requested_by="staff"
    )
    UserSessionFactory(started_at=timezone.now() - timedelta(days=500))  # past the 13-month policy
    response = operator_client.get("/dashboard/privacy/")
    html = response.content.decode()
    assert [r["requestId"] for r in response.context["requests"]["open"]] == [str(request.public_id)]
    assert str(request.public_id)[:8] in html and "1 open" in html
    retention = {p["dataType"]: p for p in response.context["retention"]}
    assert retention["sessions"]["overdueRows"] == 1 and retention["sessions"]["durationDays"] == 395
    assert re.search(r"<td>sessions</td>\s*<td class=\"num\">395</td>", html)
    audit = response.context["audit"]
    assert audit["ok"] is True and audit["checked"] == 1  # the request's own entry
    assert "verified" in html and "broken" not in html


def test_privacy_centre_shows_a_broken_audit_chain(operator_client):
    audit_log(actor="system", action="x.y", subject="s:1")
    audit_log(actor="system", action="x.y", subject="s:2")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("UPDATE privacy_audit_log SET actor = 'mallory' WHERE seq = 1")
    response = operator_client.get("/dashboard/privacy/")
    assert response.context["audit"]["ok"] is False
    html = response.content.decode()
    assert "broken" in html and "entry #1" in html


def test_favicon_redirects_to_a_static_icon(client):
    """/favicon.ico answers (no 404 in the browser console)."""
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith("dashboard/favicon.svg")


# --- methods ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", READ_ONLY_PAGES)
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_pages_answer_only_get_and_head(operator_client, url, method):
    """Every page only reads: for staff, a write method is a 405 naming GET and HEAD, not the page."""
    url = url.format(session=UserSessionFactory().public_id)
    response = getattr(operator_client, method)(url, {"range": "7d"})
    assert response.status_code == 405
    assert set(response["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}
    assert b"<html" not in response.content
    assert operator_client.head(url).status_code == 200


@pytest.mark.parametrize("url", READ_ONLY_PAGES)
def test_pages_post_no_form_to_the_dashboard(operator_client, url):
    """The only POST form on a page is the admin's logout: nothing posts to a dashboard page."""
    html = operator_client.get(url.format(session=UserSessionFactory().public_id)).content.decode()
    post_forms = re.findall(r'<form\b[^>]*method="post"[^>]*>', html, re.I)
    assert post_forms == ['<form method="post" action="/admin/logout/">']
