"""Dashboard report pages (overview range report, funnels, journeys, retention, segments):
staff only, the numbers of a small hand-counted site, and bad parameters as form errors."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client

from privacy.ledger import consent_update
from tests.federation.factories import NeuronFactory
from tests.personalization.factories import ArchetypeFactory, SegmentFactory
from tests.sessions_app.factories import BehaviorEventFactory, UserSessionFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 12, 15, 30, tzinfo=UTC)
REPORT_PAGES = ["/dashboard/funnels/", "/dashboard/journeys/", "/dashboard/retention/", "/dashboard/segments/"]
ALL_PAGES = ["/dashboard/", *REPORT_PAGES]


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def operator_client(staff_user):
    client = Client()
    client.force_login(staff_user)
    return client


def visit(neuron, *, at, anonymous_id=None, device="desktop", country="GB", events=(), consent=True):
    """A session started at `at` with (offset seconds, type, name, path) events after it."""
    extra = {"anonymous_id": anonymous_id} if anonymous_id else {}
    session = UserSessionFactory(
        neuron=neuron,
        started_at=at,
        last_activity_at=at + timedelta(seconds=events[-1][0] if events else 0),
        device_type=device,
        country=country,
        consent={"analytics": consent},
        page_view_count=sum(1 for e in events if e[1] == "page_view"),
        **extra,
    )
    for offset, event_type, name, path in events:
        BehaviorEventFactory(
            session=session,
            event_type=event_type,
            event_name=name,
            page_path=path,
            timestamp=at + timedelta(seconds=offset),
        )
    return session


@pytest.fixture
def shop(frozen):
    """Five consented sessions this week (one a return visit), one last week, one without consent.

    This week: A desktop/GB  / -> /pricing -> conversion
               B mobile/FR   / -> /pricing
               C mobile/FR   / -> /blog
               D tablet/DE   /docs yesterday, and again today: /docs -> /pricing
    Last week: one desktop/GB session. Not counted: a session without analytics consent.
    """
    neuron = NeuronFactory(slug="shop", name="Shop")
    today = NOW - timedelta(hours=2)
    yesterday = NOW - timedelta(days=1)
    visit(
        neuron,
        at=today,
        events=[(0, "page_view", "", "/"), (30, "page_view", "", "/pricing"), (90, "conversion", "purchase", "")],
    )
    visit(
        neuron,
        at=today,
        device="mobile",
        country="FR",
        events=[(0, "page_view", "", "/"), (40, "page_view", "", "/pricing")],
    )
    visit(
        neuron,
        at=today,
        device="mobile",
        country="FR",
        events=[(0, "page_view", "", "/"), (20, "page_view", "", "/blog")],
    )
    d = {"anonymous_id": "visitor-d", "device": "tablet", "country": "DE"}
    visit(neuron, at=yesterday, **d, events=[(0, "page_view", "", "/docs")])
    visit(neuron, at=today, **d, events=[(0, "page_view", "", "/docs"), (15, "page_view", "", "/pricing")])
    visit(neuron, at=NOW - timedelta(days=8), events=[(0, "page_view", "", "/")])
    visit(neuron, at=today, consent=False)
    return neuron


def chart_data(html: str, element_id: str):
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S)
    assert match, f"no #{element_id} on the page"
    return json.loads(match.group(1))


# --- access -------------------------------------------------------------------------------


@pytest.mark.parametrize("url", REPORT_PAGES)
def test_report_pages_send_anonymous_visitors_to_the_login(client, url):
    """Without a login every report page redirects to the admin login."""
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("url", REPORT_PAGES)
def test_report_pages_refuse_non_staff_users(client, django_user_model, url):
    """A logged-in user who is not staff is sent to the staff login, and sees no report."""
    client.force_login(django_user_model.objects.create_user("visitor", "v@example.com", "pw-visitor-1"))
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("url", ALL_PAGES)
def test_report_pages_are_linked_from_the_navigation(operator_client, shop, url):
    """Every page's sidebar links every report page, the current one marked active."""
    html = operator_client.get(url).content.decode()
    for page in REPORT_PAGES:
        assert f'href="{page}"' in html
    assert re.search(rf'<a href="{url}" class="active">', html)


# --- overview -----------------------------------------------------------------------------


def test_overview_reports_the_range_against_the_previous_period(operator_client, shop):
    """Tiles compare the week with the week before; the trend carries both periods day by day."""
    response = operator_client.get("/dashboard/?range=7d")
    assert response.status_code == 200
    report = response.context["report"]
    tiles = {t["metric"]: t for t in report["tiles"]}
    assert tiles["sessions"]["value"] == 5 and tiles["sessions"]["change"] == 400.0
    assert tiles["visitors"]["value"] == 4
    assert tiles["pageViews"]["value"] == 9 and tiles["pageViews"]["previous"] == "1"
    assert tiles["conversions"]["value"] == 1
    assert tiles["conversionRate"]["display"] == "20.0%"

    html = response.content.decode()
    trend = chart_data(html, "trend-data")
    assert [p["label"] for p in trend["current"]][-1] == "Nov 12"
    assert len(trend["current"]) == len(trend["previous"]) == 7
    assert [p["value"] for p in trend["current"]][-2:] == [1, 4]
    assert sum(p["value"] for p in trend["previous"]) == 1
    assert 'data-chart="trend"' in html and "▲ +400.0%" in html


def test_overview_breaks_sessions_down_by_device_and_country(operator_client, shop):
    """Device and country charts count the range's consented sessions."""
    html = operator_client.get("/dashboard/").content.decode()
    assert {r["label"]: r["value"] for r in chart_data(html, "devices-data")} == {
        "desktop": 1,
        "mobile": 2,
        "tablet": 2,
    }
    assert {r["label"]: r["value"] for r in chart_data(html, "countries-data")} == {"FR": 2, "DE": 2, "GB": 1}
    devices = re.search(r'<table class="table compact" id="devices-table">(.*?)</table>', html, re.S).group(1)
    assert re.search(r"<td>mobile</td><td class=\"num\">2</td><td class=\"num\">40%</td>", devices)


def test_overview_trend_follows_the_chosen_metric_by_the_hour_over_24h(operator_client, shop):
    """24h draws hourly buckets; a tile link picks the metric and keeps the range."""
    response = operator_client.get("/dashboard/?range=24h&metric=pageViews")
    trend = chart_data(response.content.decode(), "trend-data")
    assert trend["name"] == "Page views"
    assert len(trend["current"]) == 24 and trend["current"][-1]["label"] == "15:00"
    assert sum(p["value"] for p in trend["current"]) == 8  # yesterday's /docs view is 26 hours old
    assert sum(p["value"] for p in trend["previous"]) == 1
    assert 'href="?range=24h&amp;tz=UTC&amp;metric=visitors"' in response.content.decode()


def test_overview_site_filter_narrows_the_report(operator_client, shop):
    """Choosing another site reports only that site's sessions."""
    other = NeuronFactory(slug="blog")
    visit(other, at=NOW - timedelta(hours=1), events=[(0, "page_view", "", "/")])
    tiles = {t["metric"]: t for t in operator_client.get("/dashboard/?site=blog").context["report"]["tiles"]}
    assert tiles["sessions"]["value"] == 1
    tiles = {t["metric"]: t for t in operator_client.get("/dashboard/").context["report"]["tiles"]}
    assert tiles["sessions"]["value"] == 6


# --- funnels ------------------------------------------------------------------------------


def test_funnel_page_draws_steps_and_their_drop_off(operator_client, shop):
    """Visitors through / -> /pricing -> conversion: 3, 2, 1 with the drop at each step."""
    response = operator_client.get(
        "/dashboard/funnels/", {"step": ["page:/", "page:/pricing", "event:conversion", ""], "window": "3600"}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert chart_data(html, "funnel-data") == [
        {"label": "page:/", "count": 3, "dropped": 0},
        {"label": "page:/pricing", "count": 2, "dropped": 1},
        {"label": "event:conversion", "count": 1, "dropped": 1},
    ]
    rows = re.findall(r"<tr>\s*<td>(\d)</td>\s*<td class=\"mono\">(.*?)</td>\s*<td class=\"num\">(\d+)</td>", html)
    assert rows == [("1", "page:/", "3"), ("2", "page:/pricing", "2"), ("3", "event:conversion", "1")]
    assert "67%" in html and "33%" in html  # from previous: 2/3; from start: 1/3
    assert 'value="event:conversion"' in html  # the steps stay in the form
    assert "1 hour" in html


def test_funnel_window_bounds_the_time_from_the_first_step(operator_client, shop):
    """D viewed /docs yesterday and again 22 hours later: a second /docs step counts within a
    day, not within an hour."""
    url = "/dashboard/funnels/?step=page:/docs&step=page:/docs&window="
    html = operator_client.get(url + "86400").content.decode()
    assert [s["count"] for s in chart_data(html, "funnel-data")] == [1, 1]
    html = operator_client.get(url + "3600").content.decode()
    assert [s["count"] for s in chart_data(html, "funnel-data")] == [1, 0]


def test_funnel_page_without_steps_offers_suggestions(operator_client, shop):
    """The empty form explains itself and suggests the range's pages and events."""
    html = operator_client.get("/dashboard/funnels/").content.decode()
    assert 'data-testid="funnel-empty"' in html and "funnel-data" not in html
    assert '<option value="page:/pricing">' in html and '<option value="event:conversion:purchase">' in html
    assert html.count('name="step"') == 4


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("step=page:/", "Give at least two steps."),
        ("step=page:/&step=checkout", "Step 2: Use page:/path, event:type or event:type:name."),
        ("step=page:/&step=page:/a&window=7200", "Select a valid choice."),
        ("step=page:/&step=page:/a&window=soon", "Select a valid choice."),
        ("step=" + "&step=".join(f"page:/{i}" for i in range(11)), "At most 10 steps."),
        ("step=page:/&step=page:/a&range=1y", "Select a valid choice."),
        ("step=page:/&step=page:/a&site=nowhere", "Select a valid choice."),
        ("step=page:/&step=page:/%00", "Step 2 is not a valid step."),
    ],
)
def test_funnel_page_shows_bad_parameters_as_form_errors(operator_client, shop, query, message):
    """Bad steps, windows, ranges or sites are listed on the page (200), and no funnel is drawn."""
    response = operator_client.get(f"/dashboard/funnels/?{query}")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="form-errors"' in html
    assert message in html
    assert "funnel-data" not in html


def withdrawn_visit(neuron):
    """Today's visit through / -> /withdrawn-only -> conversion, whose visitor then withdrew analytics consent."""
    session = visit(
        neuron,
        at=NOW - timedelta(hours=1),
        events=[(0, "page_view", "", "/"), (30, "page_view", "", "/withdrawn-only"), (60, "conversion", "refund", "")],
    )
    return consent_update(session=session, given={"analytics": False})


def test_funnel_page_leaves_out_sessions_without_analytics_consent(operator_client, shop):
    """Events of a session without analytics consent are not in the funnel, nor offered as its steps."""
    withdrawn_visit(shop)
    html = operator_client.get(
        "/dashboard/funnels/", {"step": ["page:/", "page:/pricing", "event:conversion"], "window": "3600"}
    ).content.decode()
    assert [s["count"] for s in chart_data(html, "funnel-data")] == [3, 2, 1]
    html = operator_client.get(
        "/dashboard/funnels/", {"step": ["page:/", "page:/withdrawn-only"], "window": "3600"}
    ).content.decode()
    assert [s["count"] for s in chart_data(html, "funnel-data")] == [3, 0]
    suggestions = operator_client.get("/dashboard/funnels/").content.decode()
    assert "/withdrawn-only" not in suggestions and "event:conversion:refund" not in suggestions


# --- journeys -----------------------------------------------------------------------------


def test_journey_page_draws_a_sankey_of_the_next_pages(operator_client, shop):
    """After /: /pricing twice, /blog once, then every session leaves."""
    response = operator_client.get("/dashboard/journeys/?page=/&depth=2")
    assert response.status_code == 200
    html = response.content.decode()
    graph = chart_data(html, "journey-data")
    nodes = {n["name"]: (n["value"], n["depth"]) for n in graph["nodes"]}
    assert nodes == {"0:/": (3, 0), "1:/pricing": (2, 1), "1:/blog": (1, 1), "2:(exit)": (3, 2)}
    assert {(link["source"], link["target"], link["value"]) for link in graph["links"]} == {
        ("0:/", "1:/pricing", 2),
        ("0:/", "1:/blog", 1),
        ("1:/pricing", "2:(exit)", 2),
        ("1:/blog", "2:(exit)", 1),
    }
    assert {n["title"] for n in graph["nodes"]} == {"/", "+1 /pricing", "+1 /blog", "+2 (exit)"}
    assert "3 sessions viewed it" in html
    assert re.search(r'title="/pricing">/pricing</td><td class="num">2</td><td class="num">67%</td>', html)


def test_journey_page_reverses_previous_journeys_into_the_page(operator_client, shop):
    """Before /pricing: links point into the page, which sits on the right."""
    graph = chart_data(
        operator_client.get("/dashboard/journeys/?page=/pricing&direction=previous&depth=1").content.decode(),
        "journey-data",
    )
    assert {(link["source"], link["target"], link["value"]) for link in graph["links"]} == {
        ("1:/", "0:/pricing", 2),
        ("1:/docs", "0:/pricing", 1),
    }
    assert {n["name"]: n["depth"] for n in graph["nodes"]}["0:/pricing"] == 1


def test_journey_page_defaults_to_the_most_viewed_page(operator_client, shop):
    """Without a page the report starts at the range's most viewed page."""
    visit(shop, at=NOW - timedelta(hours=1), events=[(0, "page_view", "", "/pricing")])
    response = operator_client.get("/dashboard/journeys/")
    assert response.context["report"]["page"] == "/pricing"
    assert 'data-chart="sankey"' in response.content.decode()


def test_journey_page_for_an_unvisited_page_says_so(operator_client, shop):
    """A page nobody viewed gives an empty state, not an empty chart."""
    html = operator_client.get("/dashboard/journeys/?page=/nowhere").content.decode()
    assert 'data-testid="journey-empty"' in html and "journey-data" not in html


def test_journey_page_leaves_out_sessions_without_analytics_consent(operator_client, shop):
    """Page views of a session without analytics consent are in no journey, and start none."""
    withdrawn_visit(shop)
    html = operator_client.get("/dashboard/journeys/?page=/&depth=2").content.decode()
    graph = chart_data(html, "journey-data")
    assert {n["name"]: n["value"] for n in graph["nodes"]} == {"0:/": 3, "1:/pricing": 2, "1:/blog": 1, "2:(exit)": 3}
    assert "/withdrawn-only" not in html and "3 sessions viewed it" in html
    empty = operator_client.get("/dashboard/journeys/?page=/withdrawn-only").content.decode()
    assert 'data-testid="journey-empty"' in empty


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("page=pricing", "A page path starts with /."),
        ("page=/&depth=7", "Ensure this value is less than or equal to 6."),
        ("page=/&depth=two", "Enter a whole number."),
        ("page=/&limit=0", "Ensure this value is greater than or equal to 1."),
        ("page=/&direction=sideways", "Select a valid choice."),
        ("page=/" + "a" * 1100, "Ensure this value has at most 1024 characters"),
    ],
)
def test_journey_page_shows_bad_parameters_as_form_errors(operator_client, shop, query, message):
    """Bad parameters are listed on the page (200) and no graph is drawn."""
    response = operator_client.get(f"/dashboard/journeys/?{query}")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="form-errors"' in html and message in html
    assert "journey-data" not in html


# --- retention ----------------------------------------------------------------------------


def test_retention_page_draws_the_cohort_heatmap(operator_client, shop):
    """Yesterday's cohort (D) came back today; today's cohort has no later day yet."""
    response = operator_client.get("/dashboard/retention/?range=7d&period=day&periods=3")
    assert response.status_code == 200
    html = response.content.decode()
    heat = chart_data(html, "retention-data")
    assert heat["columns"] == ["Day 1", "Day 2", "Day 3"]
    rows = {r["label"]: r["values"] for r in heat["rows"]}
    assert rows["2026-11-11 (1)"] == [100.0, None, None]
    assert rows["2026-11-12 (3)"] == [None, None, None]
    assert rows["2026-11-06 (0)"] == [None, None, None]  # nobody to come back
    assert len(heat["rows"]) == 7
    assert response.context["report"]["visitors"] == 4
    assert re.search(r"<td>2026-11-11</td><td class=\"num\">1</td><td[^>]*>100.0%</td>", html)


def test_retention_page_by_week(operator_client, shop):
    """Weekly cohorts: every visitor of this week is in the cohort of the week's Monday."""
    report = operator_client.get("/dashboard/retention/?period=week&periods=2").context["report"]
    assert report["cohortPeriod"] == "week"
    sizes = {row["cohort"]: row["visitors"] for row in report["rows"]}
    assert sizes["2026-11-09"] == 4


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("period=month", "Select a valid choice."),
        ("periods=61", "Ensure this value is less than or equal to 60."),
        ("periods=-1", "Ensure this value is greater than or equal to 1."),
        ("range=", "This field is required."),
    ],
)
def test_retention_page_shows_bad_parameters_as_form_errors(operator_client, shop, query, message):
    """Bad parameters are listed on the page (200) and no heatmap is drawn."""
    response = operator_client.get(f"/dashboard/retention/?{query}")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="form-errors"' in html and message in html
    assert "retention-data" not in html


# --- segments and archetypes --------------------------------------------------------------


def test_segments_page_lists_built_in_and_rule_segments_and_archetypes(operator_client, shop):
    """Built-in segments with the range's counts, rule segments and archetypes with their sizes."""
    SegmentFactory(neuron=shop, slug="big-spenders", name="Big spenders", size=42, materialized_at=NOW)
    SegmentFactory(neuron=shop, slug="retired", name="Retired segment", size=9, is_active=False)
    ArchetypeFactory(neuron=shop, key="shoes-bags", label="Shoes & bags", size=30, top_categories=["shoes", "bags"])
    ArchetypeFactory(neuron=shop, key="books", label="Books", size=10, top_categories=["books"])
    ArchetypeFactory(neuron=NeuronFactory(slug="elsewhere"), key="films", label="Films", size=5)

    response = operator_client.get("/dashboard/segments/?site=shop")
    assert response.status_code == 200
    html = response.content.decode()
    bars = {r["label"]: r["value"] for r in chart_data(html, "segments-data")}
    assert bars["New and returning: New visitors"] == 4
    assert bars["New and returning: Returning visitors"] == 1
    assert bars["Device: mobile"] == 2 and bars["Country: DE"] == 2
    assert chart_data(html, "rules-data") == [{"label": "Big spenders", "value": 42}]
    assert chart_data(html, "archetypes-data") == [
        {"label": "Shoes & bags (shop)", "value": 30},
        {"label": "Books (shop)", "value": 10},
    ]
    assert re.search(r'data-segment="consent:analytics"><td>analytics consent granted</td><td class="num">5</td>', html)
    assert re.search(r'data-archetype="shoes-bags">.*?<td class="num">30</td><td class="num">75%</td>', html)
    assert "Retired segment" not in html and "Films" not in html


def test_segments_page_without_personalization_data_explains_the_empty_parts(operator_client, shop):
    """No rule segments and no archetypes yet: both cards say so."""
    html = operator_client.get("/dashboard/segments/").content.decode()
    assert "No active rule segments" in html and "No archetypes yet" in html
    assert "segments-data" in html


@pytest.mark.parametrize(
    ("url", "query"),
    [
        *((url, query) for url in ALL_PAGES for query in ("range=forever", "site=%00", "range=7d&site=" + "x" * 300)),
        # The privacy centre reports on every site: its only parameter is the range.
        ("/dashboard/privacy/", "range=forever"),
        ("/dashboard/privacy/", "range=%00"),
    ],
)
def test_bad_range_or_site_is_a_form_error_on_every_page(operator_client, shop, url, query):
    """Every report page lists a bad range or site instead of failing (or quietly using another)."""
    response = operator_client.get(f"{url}?{query}")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="form-errors"' in html and "Select a valid choice." in html
    assert response.context["report"] is None


@pytest.mark.parametrize("url", REPORT_PAGES)
def test_range_picker_keeps_the_other_parameters(operator_client, shop, url):
    """Switching the range keeps the page's own parameters (steps, page, period…)."""
    html = operator_client.get(f"{url}?range=30d&site=shop&step=page:/&step=page:/pricing").content.decode()
    picker = re.search(r'<form class="range".*?</form>', html, re.S).group(0)
    assert '<input type="hidden" name="site" value="shop">' in picker
    assert 'name="range" value="24h"' in picker and 'value="30d" class="on"' in picker
    if url.endswith("funnels/"):
        assert '<input type="hidden" name="step" value="page:/pricing">' in picker


def test_report_pages_on_an_empty_site_render_their_empty_states(operator_client, frozen):
    """With no data at all every page renders (no division by zero, no missing top page)."""
    NeuronFactory()
    for url in ALL_PAGES:
        response = operator_client.get(url + "?step=page:/&step=page:/a")
        assert response.status_code == 200, url
    assert 'data-testid="journey-empty"' in operator_client.get("/dashboard/journeys/").content.decode()
    assert 'data-testid="retention-empty"' in operator_client.get("/dashboard/retention/").content.decode()


def test_time_zone_picker_moves_days_and_hours_into_the_chosen_zone(operator_client, shop):
    """Tokyo is UTC+9: it is already Nov 13 there, and yesterday's session (Nov 11, 15:30 UTC) falls
    on Nov 12 with today's four (13:30 UTC): in UTC the same days read 1 and 4."""
    html = operator_client.get("/dashboard/?range=7d&tz=Asia/Tokyo").content.decode()
    trend = chart_data(html, "trend-data")
    assert [p["label"] for p in trend["current"]][-3:] == ["Nov 11", "Nov 12", "Nov 13"]
    assert [p["value"] for p in trend["current"]][-3:] == [0, 5, 0]
    assert '<option value="Asia/Tokyo" selected>' in html
    hourly = chart_data(operator_client.get("/dashboard/?range=24h&tz=Asia/Tokyo").content.decode(), "trend-data")
    assert hourly["current"][-1]["label"] == "00:00"  # 15:00 UTC


@pytest.mark.parametrize("url", REPORT_PAGES)
def test_time_zone_is_kept_by_the_page_forms_and_the_range_picker(operator_client, shop, url):
    html = operator_client.get(f"{url}?range=30d&tz=America/New_York").content.decode()
    picker = re.search(r'<form class="range".*?</form>', html, re.S).group(0)
    assert '<option value="America/New_York" selected>' in picker
    assert picker.count('name="tz"') == 1  # the select, not also a hidden copy
    assert '<input type="hidden" name="tz" value="America/New_York">' in html  # the page's own form


@pytest.mark.parametrize("url", ALL_PAGES)
def test_unknown_time_zone_is_a_form_error(operator_client, shop, url):
    response = operator_client.get(f"{url}?tz=Mars/Olympus_Mons")
    assert response.status_code == 200
    assert "Select a valid choice." in response.content.decode() and response.context["report"] is None
