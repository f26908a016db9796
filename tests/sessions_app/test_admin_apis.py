"""Admin API: staff-only session listing, search, streamed export and bounded, audited bulk updates."""

from __future__ import annotations

import base64
import csv
import io
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import orjson
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from privacy.models import AuditEntry
from sessions_app.filters import SessionFilter
from sessions_app.models import EndReason, UserSession
from tests.federation.factories import NeuronFactory
from tests.helpers import assert_problem
from tests.sessions_app.factories import BehaviorEventFactory, GlobalUserProfileFactory, UserSessionFactory

pytestmark = pytest.mark.django_db

LIST = "/api/sessions/admin/sessions"
SEARCH = "/api/sessions/admin/search"
EXPORT = "/api/sessions/admin/export"
BULK = "/api/sessions/admin/bulk-update"
DELETE = "/api/sessions/admin/delete"


def streamed(response) -> bytes:
    return b"".join(response.streaming_content)


@pytest.fixture
def user_client(db, django_user_model):
    client = APIClient()
    client.force_authenticate(django_user_model.objects.create_user("visitor", "v@example.com", "pw-visitor-1"))
    return client


@pytest.fixture
def audit_entries(db):
    """Reads the audit log: the entries written so far, oldest first."""

    def read() -> list[dict]:
        return list(AuditEntry.objects.order_by("seq").values("actor", "action", "subject", "details"))

    return read


# --- permissions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [("get", LIST), ("post", SEARCH), ("get", EXPORT + "?format=csv"), ("put", BULK), ("delete", DELETE)],
)
def test_admin_endpoints_refuse_anonymous_and_non_staff(method, url, user_client):
    """An anonymous caller is told to log in (401 with a challenge); a non-staff user is refused (403)."""
    response = getattr(APIClient(), method)(url, {}, format="json")
    assert_problem(response, 401)
    assert response["WWW-Authenticate"].startswith("Session")
    assert_problem(getattr(user_client, method)(url, {}, format="json"), 403)


def test_admin_endpoints_refuse_a_site_key(neuron):
    """A neuron's publishable key is no admin credential."""
    client = APIClient(HTTP_X_SITE_KEY=neuron.publishable_key)
    assert_problem(client.get(LIST), 401)


# --- list -------------------------------------------------------------------------


def test_list_returns_newest_first_with_camel_case_fields(staff_client):
    """Sessions come back newest first with their device, consent and counters."""
    older = UserSessionFactory(country="FR")
    newer = UserSessionFactory(country="DE", device_type="mobile", metadata={"tags": ["vip"]})
    response = staff_client.get(LIST)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["sessionId"] for r in results] == [str(newer.public_id), str(older.public_id)]
    first = results[0]
    assert first["device"]["type"] == "mobile"
    assert first["country"] == "DE"
    assert first["tags"] == ["vip"]
    assert first["neuron"] == newer.neuron.slug
    assert first["identified"] is False


def test_list_filters_by_device_country_neuron_user_and_consent(staff_client):
    """Each filter narrows the list to the sessions it describes."""
    site = NeuronFactory(slug="shop")
    profile = GlobalUserProfileFactory(neuron=site, user_id_hash="a" * 64)
    target = UserSessionFactory(
        neuron=site, device_type="tablet", country="ES", profile=profile, consent={"analytics": True}
    )
    UserSessionFactory(neuron=site, device_type="tablet", country="ES", consent={"analytics": False})
    UserSessionFactory(device_type="tablet", country="ES", profile=None)
    UserSessionFactory(neuron=site, device_type="desktop", country="ES")
    query = "?neuron=shop&device=tablet&country=es,pt&hasUser=true&consentGranted=analytics"
    response = staff_client.get(LIST + query)
    assert response.status_code == 200
    assert [r["sessionId"] for r in response.json()["results"]] == [str(target.public_id)]

    denied = staff_client.get(LIST + "?neuron=shop&consentDenied=analytics&device=tablet").json()["results"]
    assert len(denied) == 1 and denied[0]["sessionId"] != str(target.public_id)


def test_list_filters_by_start_time_and_activity(staff_client):
    """startedAfter/startedBefore bound the start time; active selects live sessions."""
    now = timezone.now()
    old = UserSessionFactory(started_at=now - timedelta(days=3))
    recent = UserSessionFactory(started_at=now - timedelta(hours=1))
    UserSessionFactory(started_at=now - timedelta(hours=2), ended_at=now)
    after = (now - timedelta(days=1)).isoformat()
    response = staff_client.get(LIST, {"startedAfter": after, "active": "true"})
    assert [r["sessionId"] for r in response.json()["results"]] == [str(recent.public_id)]
    response = staff_client.get(LIST, {"startedBefore": after})
    assert [r["sessionId"] for r in response.json()["results"]] == [str(old.public_id)]


def test_start_time_filters_take_any_iso_8601_offset(staff_client):
    """An offset beyond PostgreSQL's ±15:59 is legal ISO 8601: compared as its UTC instant. One
    that leaves the calendar once in UTC is a 400 naming the filter."""
    session = UserSessionFactory(started_at=datetime(2026, 11, 30, 5, 0, tzinfo=UTC))
    response = staff_client.get(LIST, {"startedAfter": "2026-11-29T12:00:00-17:25"})
    assert [r["sessionId"] for r in response.json()["results"]] == []
    response = staff_client.get(LIST, {"startedBefore": "2026-11-29T12:00:00-17:25"})
    assert [r["sessionId"] for r in response.json()["results"]] == [str(session.public_id)]
    body = assert_problem(staff_client.get(LIST, {"startedAfter": "0001-01-01T00:30:00+05:00"}), 400)
    assert "startedAfter" in body["errors"]


def test_list_rejects_unknown_and_malformed_filters(staff_client):
    """A misspelt filter or a bad value is a 400 naming the field, never a silent match-all."""
    body = assert_problem(staff_client.get(LIST + "?contry=GB"), 400)
    assert "contry" in body["errors"]
    body = assert_problem(staff_client.get(LIST + "?startedAfter=yesterday"), 400)
    assert "startedAfter" in body["errors"]
    body = assert_problem(staff_client.get(LIST + "?device=fridge"), 400)
    assert "device" in body["errors"]
    body = assert_problem(staff_client.get(LIST + "?consentGranted=everything"), 400)
    assert "consentGranted" in body["errors"]
    body = assert_problem(staff_client.get(LIST + "?hasUser=maybe&active=yes"), 400)
    assert {"hasUser", "active"} <= set(body["errors"])


@pytest.mark.parametrize(
    "position",
    [None, "x", "1e5", "1.5", str(2**63)],  # None: not a cursor at all; the others decode to a bad position
)
def test_list_rejects_a_forged_cursor(staff_client, position):
    """A cursor that was not issued by the API is a 400 naming the parameter, not a 500 (nor
    DRF's 404: the list exists), also when it decodes to a position an id cannot be."""
    UserSessionFactory()
    cursor = "not-a-cursor" if position is None else base64.b64encode(urlencode({"p": position}).encode()).decode()
    response = staff_client.get(LIST, {"cursor": cursor})
    assert "cursor" in assert_problem(response, 400)["errors"]


@pytest.mark.parametrize("size", ["ten", "0", "-3", "2.5"])
def test_list_rejects_a_page_size_it_cannot_read(staff_client, size):
    body = assert_problem(staff_client.get(LIST, {"pageSize": size}), 400)
    assert "pageSize" in body["errors"]


def test_list_clamps_a_page_size_over_the_maximum(staff_client):
    UserSessionFactory.create_batch(3)
    response = staff_client.get(LIST, {"pageSize": "100000"})
    assert response.status_code == 200 and len(response.json()["results"]) == 3


def test_keyset_pagination_is_stable_while_sessions_arrive(staff_client):
    """Paging through while new sessions are created neither repeats nor skips a session."""
    existing = [UserSessionFactory() for _ in range(7)]
    seen: list[str] = []
    url = LIST + "?pageSize=3"
    while url:
        response = staff_client.get(url)
        assert response.status_code == 200
        body = response.json()
        seen += [r["sessionId"] for r in body["results"]]
        UserSessionFactory()  # arrives between page requests
        url = body["next"]
    assert seen == [str(s.public_id) for s in reversed(existing)]


def test_list_query_count_does_not_grow_with_the_page(staff_client, django_assert_max_num_queries):
    """One page costs the same handful of queries whatever its size (no N+1 on neuron/profile)."""
    for _ in range(25):
        UserSessionFactory(profile=GlobalUserProfileFactory())
    with django_assert_max_num_queries(3):
        response = staff_client.get(LIST + "?pageSize=25")
    assert len(response.json()["results"]) == 25


def test_page_size_is_capped(staff_client):
    """pageSize above the maximum is clamped to it."""
    for _ in range(3):
        UserSessionFactory()
    response = staff_client.get(LIST + "?pageSize=100000")
    assert response.status_code == 200 and len(response.json()["results"]) == 3


# --- search -------------------------------------------------------------------------


def test_search_matches_sessions_by_their_events(staff_client):
    """A filter document can require an event, or its absence, on the session."""
    converted = UserSessionFactory(country="GB")
    BehaviorEventFactory(session=converted, event_type="track", event_name="Signup", page_path="/pricing")
    browsed = UserSessionFactory(country="GB")
    BehaviorEventFactory(session=browsed, event_type="page_view", page_path="/pricing")
    UserSessionFactory(country="FR")

    response = staff_client.post(
        SEARCH,
        {"filter": {"country": "GB"}, "events": [{"type": "track", "name": "Signup"}]},
        format="json",
    )
    assert response.status_code == 200
    assert [r["sessionId"] for r in response.json()["results"]] == [str(converted.public_id)]

    response = staff_client.post(
        SEARCH,
        {"filter": {"country": "GB"}, "events": [{"pathPrefix": "/pri"}, {"name": "Signup", "exists": False}]},
        format="json",
    )
    assert [r["sessionId"] for r in response.json()["results"]] == [str(browsed.public_id)]


def test_search_accepts_lists_and_booleans_in_the_filter_document(staff_client):
    """JSON values (lists for multi-choice filters, real booleans) work as query strings do."""
    live = UserSessionFactory(device_type="mobile")
    UserSessionFactory(device_type="mobile", ended_at=timezone.now())
    UserSessionFactory(device_type="desktop")
    response = staff_client.post(SEARCH, {"filter": {"device": ["mobile", "tablet"], "active": True}}, format="json")
    assert [r["sessionId"] for r in response.json()["results"]] == [str(live.public_id)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"filter": {"nope": 1}}, "nope"),
        ({"filter": []}, "filter"),
        ({"filter": {"startedAfter": ["x"]}}, "startedAfter"),
        ({"filter": {"startedBefore": {"a": 1}}}, "startedBefore"),
        ({"filter": {"neuron": ["demo"]}}, "neuron"),
        ({"filter": {"q": {"a": 1}}}, "q"),
        ({"filter": {"device": [1]}}, "device"),
        ({"filter": {"hasUser": "maybe"}}, "hasUser"),
        ({"events": [{"type": 5}]}, "events[0].type"),
        ({"events": [{"colour": "red"}]}, "events[0].colour"),
        ({"events": [{}] * 6}, "events"),
        ({"sessionIds": ["not-a-uuid"]}, "sessionIds[0]"),
        ({"extra": True}, "extra"),
    ],
)
def test_search_rejects_a_malformed_document(staff_client, body, field):
    """Every malformed part of a search document is a 400 naming it."""
    problem = assert_problem(staff_client.post(SEARCH, body, format="json"), 400)
    assert any(key.startswith(field.split("[")[0]) for key in problem["errors"]), problem


def test_search_rejects_malformed_json(staff_client):
    """A body that is not JSON is a 400 problem."""
    response = staff_client.post(SEARCH, b"{nope", content_type="application/json")
    assert_problem(response, 400)


# --- export -------------------------------------------------------------------------


def test_csv_export_quotes_visitor_text_a_spreadsheet_would_run(staff_client):
    """Landing page, referrer, UTM values and anonymous id come from visitors: a cell starting with
    = + - @ or a tab is prefixed with an apostrophe, so Excel shows it instead of running it."""
    UserSessionFactory(
        landing_page='=HYPERLINK("https://evil.example","x")',
        referrer="@SUM(1+1)",
        utm_source="+1",
        utm_campaign="-2+3",
        anonymous_id="\t=cmd",
    )
    (row,) = csv.DictReader(io.StringIO(streamed(staff_client.get(EXPORT, {"format": "csv"})).decode()))
    assert row["landingPage"] == '\'=HYPERLINK("https://evil.example","x")'
    assert (row["referrer"], row["utmSource"], row["utmCampaign"]) == ("'@SUM(1+1)", "'+1", "'-2+3")
    assert row["anonymousId"] == "'\t=cmd"
    assert row["eventCount"] == "0"  # numbers are left as they are
    json_rows = orjson.loads(streamed(staff_client.get(EXPORT, {"format": "json"})))
    assert json_rows[0]["landingPage"].startswith("=")  # JSON is not a spreadsheet: unchanged


def test_csv_export_streams_every_matching_session(staff_client, audit_entries, staff_user):
    """The CSV export has a header and one row per matching session, and is audited with its count."""
    for _ in range(5):
        UserSessionFactory(country="GB", consent={"analytics": True, "marketing": True})
    UserSessionFactory(country="FR")
    response = staff_client.get(EXPORT, {"format": "csv", "country": "GB"})
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert response["X-Total-Count"] == "5"
    rows = list(csv.DictReader(io.StringIO(streamed(response).decode())))
    assert len(rows) == 5
    assert {r["country"] for r in rows} == {"GB"}
    assert rows[0]["consent"] == "analytics;marketing"
    assert audit_entries() == [
        {
            "actor": f"user:{staff_user.pk}:staff",
            "action": "sessions.export",
            "subject": "sessions:5",
            "details": {"selection": {"country": "GB"}, "count": 5, "format": "csv"},
        }
    ]


def test_export_works_while_queries_are_logged(staff_client, audit_entries):
    """With DEBUG (make run) Django logs each query with its values written in: the export's
    timestamp formatting must survive that on every database (a bare % once broke SQLite's)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    session = UserSessionFactory(country="GB")
    with CaptureQueriesContext(connection):
        response = staff_client.get(EXPORT, {"format": "csv", "country": "GB"})
        rows = list(csv.DictReader(io.StringIO(streamed(response).decode())))
    assert [r["sessionId"] for r in rows] == [str(session.public_id)]
    started = datetime.fromisoformat(rows[0]["startedAt"].replace("Z", "+00:00"))
    assert abs(started - session.started_at) < timedelta(milliseconds=1)


def test_json_export_is_a_valid_array(staff_client, audit_entries):
    """The JSON export parses as an array of session objects, oldest first."""
    first = UserSessionFactory()
    second = UserSessionFactory()
    response = staff_client.get(EXPORT + "?format=json")
    rows = orjson.loads(streamed(response))
    assert [r["sessionId"] for r in rows] == [str(first.public_id), str(second.public_id)]
    assert rows[0]["identified"] is False
    # ISO 8601 in UTC, to the millisecond at least, on SQLite and PostgreSQL alike.
    started = datetime.fromisoformat(rows[0]["startedAt"].replace("Z", "+00:00"))
    assert abs(started - first.started_at) < timedelta(milliseconds=1)
    assert rows[0]["endedAt"] is None
    assert rows[0]["consent"] == first.consent


@pytest.mark.django_db(transaction=True)
def test_export_streams_under_asgi_without_buffering(staff_user, audit_entries):
    """Served by the ASGI handler the export is an async stream (Django would buffer a sync one whole)."""
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    UserSessionFactory.create_batch(3, country="PT")
    client = AsyncClient()
    async_to_sync(client.aforce_login)(staff_user)

    async def fetch():
        response = await client.get(EXPORT, {"format": "csv", "country": "PT"})
        assert response.is_async
        return response.status_code, b"".join([chunk async for chunk in response.streaming_content])

    status, body = async_to_sync(fetch)()
    assert status == 200
    assert len(list(csv.DictReader(io.StringIO(body.decode())))) == 3


def test_empty_json_export_is_an_empty_array(staff_client, audit_entries):
    """No match still yields valid JSON."""
    assert orjson.loads(streamed(staff_client.get(EXPORT + "?format=json"))) == []


def test_export_needs_a_known_format(staff_client, audit_entries):
    """format is required and must be csv or json."""
    assert "format" in assert_problem(staff_client.get(EXPORT), 400)["errors"]
    assert "format" in assert_problem(staff_client.get(EXPORT + "?format=xml"), 400)["errors"]
    assert audit_entries() == []


def test_export_memory_stays_flat_as_rows_grow(staff_client, audit_entries, monkeypatch):
    """Exporting ten times the rows does not take ten times the memory: rows are read in chunks."""
    from sessions_app import admin_selectors

    monkeypatch.setattr(admin_selectors, "EXPORT_CHUNK_ROWS", 100)
    small_site, large_site = NeuronFactory(slug="small"), NeuronFactory(slug="large")
    UserSessionFactory.create_batch(200, neuron=small_site)
    UserSessionFactory.create_batch(2000, neuron=large_site)

    def export(neuron: str) -> tuple[int, int]:
        tracemalloc.start()
        response = staff_client.get(EXPORT, {"format": "csv", "neuron": neuron})
        lines = sum(chunk.count(b"\n") for chunk in response.streaming_content)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return lines, top

    export("small")  # warm caches (compiled SQL, imports) so they do not count against the small run
    # tracemalloc counts every thread's allocations: the lowest of three runs leaves out what a
    # thread left running by an earlier test (a server's pool, a ticker) allocated meanwhile.
    small = [export("small") for _ in range(3)]
    large = [export("large") for _ in range(3)]
    assert {lines for lines, _ in small} == {201} and {lines for lines, _ in large} == {2001}
    small_peak, large_peak = min(peak for _, peak in small), min(peak for _, peak in large)
    assert large_peak < 2 * small_peak, (small, large)


# --- bulk update ----------------------------------------------------------------------


def test_bulk_update_dry_run_counts_without_writing(staff_client, audit_entries):
    """A dry run reports the match count and changes nothing."""
    sessions = UserSessionFactory.create_batch(3, country="IT")
    response = staff_client.put(BULK, {"filter": {"country": "IT"}, "end": True, "dryRun": True}, format="json")
    assert response.status_code == 200
    assert response.json() == {"matched": 3, "changed": 0, "dryRun": True, "limit": 10_000, "withinLimit": True}
    assert all(UserSession.objects.get(pk=s.pk).ended_at is None for s in sessions)
    assert audit_entries() == []


def test_bulk_update_ends_sessions_and_is_audited(staff_client, audit_entries, staff_user):
    """Ending a filtered set ends the live ones as an operator action and audits filter and count."""
    live = UserSessionFactory.create_batch(2, country="IT")
    already = UserSessionFactory(country="IT", ended_at=timezone.now() - timedelta(hours=1), end_reason="client")
    UserSessionFactory(country="FR")
    response = staff_client.put(BULK, {"filter": {"country": "IT"}, "end": True}, format="json")
    assert response.status_code == 200
    assert response.json()["matched"] == 3 and response.json()["changed"] == 2
    for session in live:
        session.refresh_from_db()
        assert session.ended_at is not None and session.end_reason == EndReason.ADMIN
    already.refresh_from_db()
    assert already.end_reason == "client"
    assert len(audit_entries()) == 1
    entry = audit_entries()[0]
    assert entry["actor"] == f"user:{staff_user.pk}:staff" and entry["action"] == "sessions.bulk_update"
    assert entry["details"]["selection"] == {"filter": {"country": "IT"}}
    assert entry["details"]["matched"] == 3 and entry["details"]["changed"] == 2


def test_bulk_update_refuses_a_nul_character_in_metadata(staff_client, audit_entries):
    """PostgreSQL's jsonb cannot hold one: a 400 naming the field on both databases, nothing written."""
    target = UserSessionFactory(metadata={"plan": "free"})
    response = staff_client.put(
        BULK, {"sessionIds": [str(target.public_id)], "metadata": {"note": "a\u0000b"}}, format="json"
    )
    assert "metadata" in assert_problem(response, 400)["errors"]
    target.refresh_from_db()
    assert target.metadata == {"plan": "free"}


def test_bulk_update_sets_tags_and_metadata_by_id(staff_client, audit_entries):
    """Tags are added and removed as a set; metadata keys are merged; other sessions are untouched."""
    target = UserSessionFactory(metadata={"tags": ["old", "keep"], "plan": "free"})
    other = UserSessionFactory(metadata={"tags": ["old"]})
    response = staff_client.put(
        BULK,
        {
            "sessionIds": [str(target.public_id)],
            "addTags": ["reviewed"],
            "removeTags": ["old"],
            "metadata": {"plan": "pro"},
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    target.refresh_from_db()
    other.refresh_from_db()
    assert target.metadata == {"tags": ["keep", "reviewed"], "plan": "pro"}
    assert other.metadata == {"tags": ["old"]}
    assert audit_entries()[0]["details"]["selection"] == {"sessionIds": [str(target.public_id)]}


def test_bulk_update_above_the_limit_is_refused_whole(staff_client, audit_entries, settings):
    """A selection above the limit is a 422 with the count, and nothing changes."""
    settings.ADMIN_BULK_MAX_SESSIONS = 3
    UserSessionFactory.create_batch(4, country="NL")
    body = assert_problem(staff_client.put(BULK, {"filter": {"country": "NL"}, "end": True}, format="json"), 422)
    assert body["matched"] == 4 and body["limit"] == 3
    assert not UserSession.objects.filter(ended_at__isnull=False).exists()
    assert audit_entries() == []

    dry = staff_client.put(BULK, {"filter": {"country": "NL"}, "end": True, "dryRun": True}, format="json").json()
    assert dry["matched"] == 4 and dry["withinLimit"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"end": True}, "filter"),
        ({"filter": {}}, "end"),
        ({"filter": {}, "end": "yes"}, "end"),
        ({"filter": {}, "addTags": ["x" * 65]}, "addTags"),
        ({"filter": {}, "metadata": [1]}, "metadata"),
        ({"filter": {"country": "GB"}, "end": True, "dryRun": 1}, "dryRun"),
        ({"filter": {"startedAfter": ["x"]}, "end": True}, "startedAfter"),
        ({"filter": {"active": 2}, "end": True}, "active"),
    ],
)
def test_bulk_update_rejects_malformed_requests(staff_client, audit_entries, body, field):
    """A request without a selection, without a change, or with wrong types is a 400."""
    UserSessionFactory()
    problem = assert_problem(staff_client.put(BULK, body, format="json"), 400)
    assert any(key.startswith(field) for key in problem["errors"]), problem
    assert audit_entries() == []


def test_bulk_update_refuses_metadata_that_would_grow_too_large(staff_client, audit_entries):
    """Metadata past the per-session cap is a 422 and rolls back every change."""
    big = UserSessionFactory(metadata={"blob": "x" * 15_000})
    small = UserSessionFactory(metadata={})
    response = staff_client.put(BULK, {"filter": {}, "end": True, "metadata": {"more": "y" * 2_000}}, format="json")
    assert_problem(response, 422)
    big.refresh_from_db()
    small.refresh_from_db()
    assert small.metadata == {} and small.ended_at is None and big.ended_at is None
    assert audit_entries() == []


def test_bulk_update_with_an_unknown_session_id_matches_nothing(staff_client, audit_entries):
    """Ids that do not exist select nothing (and say so) rather than erroring."""
    UserSessionFactory()
    response = staff_client.put(BULK, {"sessionIds": [str(uuid.uuid4())], "end": True}, format="json")
    assert response.json()["matched"] == 0


def test_export_rows_are_documented_column_for_column():
    """The OpenAPI shape of a JSON export row lists exactly the export's columns."""
    from sessions_app.admin_apis import ExportRowOutput
    from sessions_app.admin_selectors import EXPORT_NAMES

    assert set(ExportRowOutput().fields) == set(EXPORT_NAMES)


def test_schema_documents_the_list_and_export_filters(staff_client):
    """Every SessionFilter filter is a documented query parameter, typed, with its choices."""
    spec = staff_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path in ("/api/sessions/admin/sessions", "/api/sessions/admin/export"):
        params = {p["name"]: p for p in spec["paths"][path]["get"]["parameters"]}
        assert set(SessionFilter.base_filters) <= set(params), path
        assert params["hasUser"]["schema"]["type"] == "boolean"
        assert params["startedAfter"]["schema"]["format"] == "date-time"
        assert params["device"]["schema"]["type"] == "array"
        assert "mobile" in params["device"]["schema"]["items"]["enum"]
        assert "analytics" in params["consentGranted"]["schema"]["enum"]
