"""The dashboard in a real browser: Debian's Chromium driven by Playwright against an ASGI server
(fixtures in tests/analytics/conftest.py)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def tile(page, name: str) -> int:
    return int(page.locator(f'.tile [data-live="{name}"]').inner_text())


def test_overview_draws_live_charts_and_is_saved_as_an_artifact(seeded, page, artifacts):
    """After logging in the overview connects live, draws its charts and logs no console error."""
    page.wait_for_selector("#live-status[data-state=live]", timeout=10_000)
    page.wait_for_selector("#live-chart canvas")
    assert page.locator("#live-chart").get_attribute("data-drawn") == "true"
    assert "/pricing" in page.locator("#top-pages").inner_text()
    page.screenshot(path=str(artifacts / "dashboard-overview.png"), full_page=True)
    assert page.errors == []


def test_live_counter_rises_after_an_event_is_posted(seeded, page):
    """Posting an event through the API raises the events tile and shows it in the feed."""
    neuron, _ = seeded
    page.wait_for_selector("#live-status[data-state=live]", timeout=10_000)
    before = tile(page, "events")
    api = httpx.Client(base_url=page.base, timeout=10)
    created = api.post(
        "/api/sessions/create", json={"consent": {"analytics": True}}, headers={"X-Site-Key": neuron.publishable_key}
    ).json()
    response = api.post(
        f"/api/sessions/{created['sessionId']}/events",
        json={"eventType": "track", "eventName": "Browser test purchase", "page": {"path": "/checkout"}},
        headers={"Authorization": f"Bearer {created['token']}"},
    )
    assert response.status_code < 300, response.text
    page.wait_for_function(
        f"Number(document.querySelector('.tile [data-live=events]').textContent) > {before}", timeout=10_000
    )
    page.locator("#live-feed", has_text="Browser test purchase").wait_for(timeout=10_000)
    assert page.errors == []


def test_explorer_filters_and_opens_a_session(seeded, page):
    """Filtering by country narrows the table; a row opens the session page with its timeline chart."""
    _, sessions = seeded
    page.click("text=Sessions")
    page.wait_for_selector("#sessions-table")
    assert page.locator("#sessions-table tbody tr").count() == 5
    page.fill("#id_country", "FR")
    page.click("#explorer-filters button[type=submit]")
    page.wait_for_url("**/dashboard/sessions/?*country=FR*")
    rows = page.locator("#sessions-table tbody tr")
    assert rows.count() == 2
    assert set(rows.locator("td:nth-child(5)").all_inner_texts()) == {"FR"}
    rows.first.locator("a").click()
    page.wait_for_selector("[data-chart=timeline] canvas")
    assert "Journey" in page.content()
    assert page.errors == []


def test_export_downloads_the_filtered_sessions_as_csv(seeded, page):
    """The Export CSV button downloads exactly the filtered sessions."""
    page.goto(f"{page.base}/dashboard/sessions/?country=GB")
    with page.expect_download() as download_info:
        page.click("[data-testid=export-csv]")
    download = download_info.value
    assert download.suggested_filename == "sessions.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    assert len(rows) == 2 and {r["country"] for r in rows} == {"GB"}
    assert page.errors == []


def test_privacy_centre_draws_consent_rates(seeded, page):
    """The privacy centre's consent chart is drawn."""
    page.click("text=Privacy centre")
    page.wait_for_selector("[data-chart=consent] canvas")
    assert page.errors == []


@pytest.fixture
def html_named_event(seeded):
    """A session with an event named like HTML (visitors choose event names). Made before the page
    fixture starts Playwright, whose event loop would give the ORM another connection."""
    from tests.sessions_app.factories import BehaviorEventFactory

    session = seeded[1][0]
    BehaviorEventFactory(session=session, event_name='<img src=x onerror="window.__xss=1">')
    return session


def test_visitor_text_in_a_chart_tooltip_is_shown_not_run(html_named_event, page):
    """An event named like HTML shows as text in the timeline's tooltip, and runs nothing."""
    session = html_named_event
    page.goto(f"{page.base}/dashboard/sessions/{session.public_id}/")
    page.wait_for_selector("[data-chart=timeline][data-rendered=true]", timeout=10_000)
    index = page.evaluate(
        """() => {
          const chart = echarts.getInstanceByDom(document.querySelector('[data-chart=timeline]'));
          const points = chart.getOption().series[0].data;
          const i = points.findIndex((p) => String(p[2]).startsWith('<img'));
          chart.dispatchAction({ type: 'showTip', seriesIndex: 0, dataIndex: i });
          return i;
        }"""
    )
    assert index >= 0
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('div')).some((d) => d.textContent.includes('<img src=x'))",
        timeout=5_000,
    )
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.__xss") is None
    assert page.locator("img[src=x]").count() == 0
