"""Analytics API: success for every endpoint and type, bad input, credentials, consent, query counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from rest_framework.test import APIClient

from analytics import services
from privacy.ledger import consent_update
from tests.analytics.factories import build_population
from tests.federation.factories import NeuronFactory
from tests.helpers import assert_problem
from tests.sessions_app.factories import BehaviorEventFactory, UserSessionFactory

pytestmark = pytest.mark.django_db

START = datetime(2026, 10, 30, tzinfo=UTC)
NOW = START + timedelta(days=3, hours=6)
RANGE = {"from": "2026-10-30", "to": "2026-11-02"}
TYPES = ["trends", "funnel", "journeys", "retention", "engagement", "pages", "referrers", "events"]
TYPE_PARAMS = {
    "trends": {"metric": "pageViews", "interval": "hour"},
    "funnel": {"step": ["page:/", "event:click:signup", "event:conversion"], "window": 3600},
    "journeys": {"page": "/pricing", "direction": "previous", "depth": 2},
    "retention": {"period": "week", "periods": 2},
    "pages": {"limit": 3},
    "referrers": {},
    "events": {},
    "engagement": {},
}
ENDPOINTS = ["/api/sessions/metrics", "/api/sessions/devices", "/api/sessions/geographic", "/api/sessions/segments"] + [
    f"/api/sessions/analytics/{t}" for t in TYPES
]


def _params(url: str, **extra):
    kind = url.rsplit("/", 1)[-1]
    return {**RANGE, **TYPE_PARAMS.get(kind, {}), **extra}


@pytest.fixture
def population(db, settings):
    settings.ANALYTICS_ROLLUP_SETTLE = timedelta(hours=1)
    pop = build_population(start=START, days=3, sessions=90)
    services.rollup_advance(now=START + timedelta(days=2))
    return pop


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.mark.parametrize("url", ENDPOINTS)
def test_staff_get_each_report(population, frozen, staff_client, url):
    """Every endpoint answers 200 with the requested period for staff."""
    response = staff_client.get(url, _params(url, tz="Europe/Berlin"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["period"]["tz"] == "Europe/Berlin"
    assert body["period"]["from"].startswith("2026-10-30T00:00:00+")


def test_metrics_body_reports_consented_and_anonymous_traffic(population, frozen, staff_client):
    """Metrics carry each number with its previous period, plus anonymously counted traffic apart."""
    body = staff_client.get("/api/sessions/metrics", RANGE).json()
    assert set(body["consented"]) >= {
        "sessions",
        "visitors",
        "pageViews",
        "avgSessionDuration",
        "bounceRate",
        "pagesPerSession",
        "conversionRate",
    }
    assert set(body["consented"]["sessions"]) == {"value", "previous", "change"}
    assert body["anonymous"]["pageViews"]["value"] > 0
    assert isinstance(body["activeSessions"], int)


def test_sessions_without_analytics_consent_are_not_in_consented_metrics(db, frozen, staff_client, neuron):
    """Only analytics-consented sessions count; the others appear only as a consent-state segment."""
    UserSessionFactory(neuron=neuron, started_at=NOW - timedelta(hours=2))
    UserSessionFactory(neuron=neuron, started_at=NOW - timedelta(hours=2), consent={"analytics": False})
    params = {"from": "2026-11-02", "to": "2026-11-02", "neuronId": neuron.slug}
    body = staff_client.get("/api/sessions/metrics", params).json()
    assert body["consented"]["sessions"]["value"] == 1
    segments = staff_client.get("/api/sessions/segments", params).json()
    assert segments["allSessions"] == 2
    assert {s["id"]: s["sessions"] for s in segments["segments"]}["consent:analytics"] == 1


def test_filters_narrow_the_numbers(population, frozen, staff_client):
    """deviceType, country and utmSource each narrow sessions to matching ones."""
    everything = staff_client.get("/api/sessions/metrics", RANGE).json()["consented"]["sessions"]["value"]
    parts = [
        staff_client.get("/api/sessions/metrics", {**RANGE, "deviceType": d}).json()["consented"]["sessions"]["value"]
        for d in ("desktop", "mobile", "tablet")
    ]
    assert sum(parts) == everything and all(parts)
    gb = staff_client.get("/api/sessions/metrics", {**RANGE, "country": "gb", "utmSource": "ads"}).json()
    assert 0 < gb["consented"]["sessions"]["value"] < everything


def test_unknown_analytics_type_is_a_404_listing_valid_types(staff_client):
    """An unknown type answers 404 with the valid ones."""
    body = assert_problem(staff_client.get("/api/sessions/analytics/heatmaps"), 404)
    assert body["validTypes"] == sorted(TYPES)


@pytest.mark.parametrize(
    "url,params,field",
    [
        ("/api/sessions/metrics", {"from": "yesterday"}, "from"),
        ("/api/sessions/metrics", {"from": "2026-11-02", "to": "2026-11-01"}, "from"),
        ("/api/sessions/metrics", {"from": "2026-11-02T10:30:00Z"}, "from"),
        ("/api/sessions/metrics", {"from": "0001-01-01T00:00:00+05:00"}, "from"),
        ("/api/sessions/metrics", {"tz": "Nowhere/Land"}, "tz"),
        ("/api/sessions/metrics", {"deviceType": "toaster"}, "deviceType"),
        ("/api/sessions/metrics", {"country": "GBR"}, "country"),
        ("/api/sessions/metrics", {"neuronId": "no-such-site"}, "neuronId"),
        ("/api/sessions/metrics", {"bogus": "1"}, "bogus"),
        ("/api/sessions/devices", {"from": "2000-01-01", "to": "2026-01-01"}, "to"),
        ("/api/sessions/geographic", {"from": "2026-11-02", "to": "2026-11-01"}, "from"),
        ("/api/sessions/geographic", {"from": "2000-01-01", "to": "2026-01-01"}, "to"),
        ("/api/sessions/geographic", {"to": "soon"}, "to"),
        ("/api/sessions/geographic", {"tz": "Nowhere/Land"}, "tz"),
        ("/api/sessions/geographic", {"country": "GBR"}, "country"),
        ("/api/sessions/geographic", {"region": "Bavaria"}, "region"),
        ("/api/sessions/segments", {"from": "2026-11-02", "to": "2026-11-01"}, "from"),
        ("/api/sessions/segments", {"from": "2000-01-01", "to": "2026-01-01"}, "to"),
        ("/api/sessions/segments", {"from": "2026-11-02T10:30:00Z"}, "from"),
        ("/api/sessions/segments", {"deviceType": "toaster"}, "deviceType"),
        ("/api/sessions/segments", {"neuronId": "no-such-site"}, "neuronId"),
        ("/api/sessions/segments", {"segment": "vip"}, "segment"),
        ("/api/sessions/analytics/trends", {"metric": "happiness"}, "metric"),
        ("/api/sessions/analytics/trends", {"interval": "hour", "from": "2026-09-01", "to": "2026-10-30"}, "interval"),
        ("/api/sessions/analytics/funnel", {}, "step"),
        ("/api/sessions/analytics/funnel", {"step": ["page:/"]}, "step"),
        ("/api/sessions/analytics/funnel", {"step": ["page:/", "nonsense"]}, "step[1]"),
        ("/api/sessions/analytics/funnel", {"step": ["page:/", "page:/a"], "window": "0"}, "window"),
        ("/api/sessions/analytics/journeys", {}, "page"),
        ("/api/sessions/analytics/journeys", {"page": "pricing"}, "page"),
        ("/api/sessions/analytics/journeys", {"page": "/", "depth": "9"}, "depth"),
        ("/api/sessions/analytics/retention", {"periods": "0"}, "periods"),
        ("/api/sessions/analytics/pages", {"limit": "1000"}, "limit"),
        ("/api/sessions/analytics/events", {"limit": "ten"}, "limit"),
        # Near the calendar's ends: the range, a day after it or its previous period leave what dates hold.
        ("/api/sessions/metrics", {"to": "9999-12-31"}, "to"),
        ("/api/sessions/metrics", {"from": "0001-01-01", "to": "0001-01-02", "tz": "Pacific/Kiritimati"}, "from"),
        ("/api/sessions/devices", {"from": "9999-12-30", "to": "9999-12-31", "tz": "Etc/GMT+12"}, "to"),
        ("/api/sessions/geographic", {"from": "1899-12-31", "to": "1900-01-02"}, "from"),
        ("/api/sessions/analytics/trends", {"to": "9999-12-31T23:00:00Z"}, "to"),
        ("/api/sessions/analytics/retention", {"from": "0001-01-01", "to": "0001-01-31"}, "from"),
    ],
)
def test_bad_parameters_are_400_problems_naming_the_field(db, staff_client, url, params, field):
    """Bad query parameters answer 400 with the field named, never a 500."""
    body = assert_problem(staff_client.get(url, params), 400)
    assert field in body["errors"], body


# A visit: / -> /pricing, a signup click and a purchase (seconds after the start, type, name, path).
VISIT = [
    (0, "page_view", "", "/"),
    (40, "page_view", "", "/pricing"),
    (60, "click", "signup", ""),
    (90, "conversion", "purchase", ""),
]
# Withdrawing analytics consent deletes the session's events (privacy.ledger), so no report reads them.
CONSENT_ENDPOINTS = [
    "/api/sessions/devices",
    "/api/sessions/geographic",
    *(f"/api/sessions/analytics/{t}" for t in TYPES),
]


def _visit(neuron, *, device="desktop", country="GB", referrer="", utm_source=""):
    """A session two hours before NOW with the VISIT events and the counters ingestion keeps."""
    started = NOW - timedelta(hours=2)
    session = UserSessionFactory(
        neuron=neuron,
        started_at=started,
        last_activity_at=started + timedelta(seconds=VISIT[-1][0]),
        device_type=device,
        browser="Firefox" if device == "mobile" else "Chrome",
        os="Android" if device == "mobile" else "Windows",
        country=country,
        referrer=referrer,
        utm_source=utm_source,
        landing_page="/",
        event_count=len(VISIT),
        page_view_count=2,
        interaction_count=1,
        conversion_count=1,
    )
    for offset, event_type, name, path in VISIT:
        BehaviorEventFactory(
            session=session,
            event_type=event_type,
            event_name=name,
            page_path=path,
            timestamp=started + timedelta(seconds=offset),
        )
    return session


@pytest.fixture
def consent_sites(db, frozen):
    """Three sites with the same consented visit. `withdrawn` has a second visitor who withdrew analytics
    consent after their events were stored; `granted` has the same second visit, still consented."""
    sites = {name: NeuronFactory(slug=name) for name in ("baseline", "withdrawn", "granted")}
    for site in sites.values():
        _visit(site)
    second = {"device": "mobile", "country": "FR", "referrer": "https://news.example.org/a", "utm_source": "ads"}
    _visit(sites["granted"], **second)
    consent_update(session=_visit(sites["withdrawn"], **second), given={"analytics": False})
    return sites


@pytest.mark.parametrize("url", CONSENT_ENDPOINTS)
def test_sessions_without_analytics_consent_are_left_out_of_each_report(consent_sites, staff_client, url):
    """A visitor who withdrew analytics consent adds nothing to a report: the site reads as if only the
    consented visitor came, while the same visit with consent does change it."""

    def report(site: str) -> dict:
        response = staff_client.get(url, _params(url, neuronId=site))
        assert response.status_code == 200, response.content
        body = response.json()
        del body["period"]  # names the site
        return body

    baseline = report("baseline")
    assert report("granted") != baseline  # the second visit shows when it may
    assert report("withdrawn") == baseline


@pytest.mark.parametrize("url", ENDPOINTS)
def test_anonymous_callers_are_refused(db, url):
    """No credentials: a problem response, no data."""
    response = APIClient().get(url, _params(url))
    assert_problem(response, 403)


@pytest.mark.parametrize("url", ENDPOINTS)
def test_non_staff_users_and_site_keys_are_refused(db, django_user_model, neuron, url):
    """A logged-in non-staff user, or a browser's publishable key, cannot read analytics."""
    user = django_user_model.objects.create_user("visitor", "v@example.com", "pw-visitor-123")
    client = APIClient()
    client.force_authenticate(user)
    assert_problem(client.get(url, _params(url)), 403)
    assert_problem(APIClient(HTTP_X_SITE_KEY=neuron.publishable_key).get(url, _params(url)), 403)


@pytest.mark.parametrize("url", ENDPOINTS)
def test_query_count_does_not_grow_with_data(population, frozen, staff_client, django_assert_max_num_queries, url):
    """Each report runs a bounded number of queries, whatever the number of rows."""
    with django_assert_max_num_queries(30):
        assert staff_client.get(url, _params(url)).status_code == 200


def test_openapi_documents_the_analytics_endpoints(db, staff_client):
    """The schema lists every analytics path with its parameters."""
    response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/api/sessions/metrics", "/api/sessions/analytics/{type}", "/api/sessions/devices"):
        assert path in paths, sorted(paths)
    names = {p["name"] for p in paths["/api/sessions/metrics"]["get"]["parameters"]}
    assert {"from", "to", "tz", "neuronId", "deviceType", "country", "utmSource"} <= names
    type_param = next(p for p in paths["/api/sessions/analytics/{type}"]["get"]["parameters"] if p["name"] == "type")
    assert set(type_param["schema"]["enum"]) == set(TYPES)
