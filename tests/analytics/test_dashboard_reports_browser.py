"""The report pages in a real browser: each draws its ECharts chart from seeded data, with
series data in the chart instance and no console error; a screenshot of each is saved."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.personalization.factories import ArchetypeFactory, SegmentFactory
from tests.sessions_app.factories import BehaviorEventFactory, UserSessionFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

SERIES_POINTS = """selector => {
  const chart = echarts.getInstanceByDom(document.querySelector(selector));
  return chart ? chart.getOption().series.map(s => (s.data || []).length) : null;
}"""


@pytest.fixture
def history(seeded):
    """Three of the seeded visitors also came two days ago (/ then /docs): retention has a
    cohort that came back, journeys a second path."""
    neuron, sessions = seeded
    earlier = timezone.now() - timedelta(days=2)
    for session in sessions[:3]:
        old = UserSessionFactory(
            neuron=neuron, anonymous_id=session.anonymous_id, started_at=earlier, device_type=session.device_type
        )
        BehaviorEventFactory(session=old, page_path="/", timestamp=earlier)
        BehaviorEventFactory(session=old, page_path="/docs", timestamp=earlier + timedelta(seconds=30))
    SegmentFactory(neuron=neuron, slug="mobile", name="Mobile visitors", size=2, materialized_at=timezone.now())
    ArchetypeFactory(neuron=neuron, key="pricing", label="Pricing", size=4, top_categories=["pricing"])
    ArchetypeFactory(neuron=neuron, key="docs", label="Docs", size=2, top_categories=["docs"])
    return neuron


def screenshot(page, path) -> None:
    """A full-page screenshot once every chart has finished drawing (animations included)."""
    page.wait_for_function("[...document.querySelectorAll('[data-chart]')].every(el => el.dataset.rendered)")
    page.screenshot(path=str(path), full_page=True)


def series_points(page, selector: str) -> list[int]:
    page.wait_for_selector(f"{selector} canvas")
    return page.evaluate(SERIES_POINTS, selector)


def test_overview_draws_trend_with_previous_period_and_breakdowns(history, page, artifacts):
    """The range report draws the trend (this period and the previous one), devices and countries."""
    page.goto(f"{page.base}/dashboard/?range=7d")
    assert series_points(page, "[data-testid=trend-chart]") == [7, 7]
    assert series_points(page, "[data-testid=devices-chart]") == [3]
    assert series_points(page, "[data-testid=countries-chart]") == [3]
    page.click("a.tile[data-metric=pageViews]")
    page.wait_for_url("**/dashboard/?range=7d*metric=pageViews")
    page.wait_for_selector("[data-testid=trend-chart] canvas")
    assert "Page views" in page.locator("[data-testid=trend-chart]").locator("xpath=..").inner_text()
    screenshot(page, artifacts / "dashboard-overview-range.png")
    # Another time zone: the range picker sends it with the range, and the metric is kept.
    page.select_option("form.range select[name=tz]", "Asia/Tokyo")
    page.click("form.range button[value='30d']")
    page.wait_for_url("**/dashboard/?*tz=Asia%2FTokyo*")
    assert "range=30d" in page.url and "metric=pageViews" in page.url
    assert series_points(page, "[data-testid=trend-chart]") == [30, 30]
    assert page.locator("form.range select[name=tz]").input_value() == "Asia/Tokyo"
    assert page.errors == []


def test_funnel_page_builds_a_funnel_from_the_form(history, page, artifacts):
    """Steps typed into the form give the funnel chart and its table."""
    page.click("nav >> text=Funnels")
    page.wait_for_selector("#funnel-form")
    page.fill("input[name=step] >> nth=0", "page:/")
    page.fill("input[name=step] >> nth=1", "page:/pricing")
    page.select_option("#id_window", "3600")
    page.click("#funnel-form button[type=submit]")
    page.wait_for_url("**/dashboard/funnels/?*window=3600*")
    assert series_points(page, "[data-testid=funnel-chart]") == [2, 2]
    cells = page.locator("#funnel-table tbody tr td:nth-child(3)").all_inner_texts()
    assert cells == ["5", "5"]
    screenshot(page, artifacts / "dashboard-funnels.png")
    assert page.errors == []


def test_funnel_page_shows_form_errors_without_console_errors(history, page):
    """A bad step is reported on the page; nothing breaks in the browser."""
    page.goto(f"{page.base}/dashboard/funnels/?step=page:/&step=pricing")
    assert "Step 2" in page.locator("[data-testid=form-errors]").inner_text()
    assert page.locator("[data-chart]").count() == 0
    assert page.errors == []


def test_journey_page_draws_a_sankey(history, page, artifacts):
    """Journeys after / draw a Sankey with its nodes and links."""
    page.click("nav >> text=Journeys")
    page.fill("#id_page", "/")
    page.click("#journey-form button[type=submit]")
    page.wait_for_url("**/dashboard/journeys/?*page=%2F*")
    page.wait_for_selector("[data-testid=journey-chart] canvas")
    graph = page.evaluate(
        """() => {
          const el = document.querySelector('[data-testid=journey-chart]');
          const s = echarts.getInstanceByDom(el).getOption().series[0];
          return {type: s.type, nodes: s.data.map(n => n.name), links: s.links.length};
        }"""
    )
    assert graph["type"] == "sankey"
    assert {"0:/", "1:/pricing", "1:/docs"} <= set(graph["nodes"]) and graph["links"] >= 3
    screenshot(page, artifacts / "dashboard-journeys.png")
    assert page.errors == []


def test_retention_page_draws_the_cohort_heatmap(history, page, artifacts):
    """Daily cohorts: the visitors of two days ago came back today."""
    page.click("nav >> text=Retention")
    page.wait_for_selector("[data-testid=retention-chart] canvas")
    points = page.evaluate(
        """() => echarts.getInstanceByDom(document.querySelector('[data-testid=retention-chart]'))
                 .getOption().series[0].data"""
    )
    # [column, row, percent]: the cohort of two days ago, nobody yesterday, everybody today.
    assert sorted((p[0], p[2]) for p in points) == [(0, 0), (1, 100)]
    screenshot(page, artifacts / "dashboard-retention.png")
    assert page.errors == []


def test_segments_page_draws_segments_and_archetypes(history, page, artifacts):
    """Built-in segments, rule segments and archetypes each get their chart."""
    page.click("nav >> text=Segments")
    assert series_points(page, "[data-testid=segments-chart]")[0] >= 4
    assert series_points(page, "[data-testid=rules-chart]") == [1]
    assert series_points(page, "[data-testid=archetypes-chart]") == [2]
    assert "Mobile visitors" in page.locator("#rules-table").inner_text()
    screenshot(page, artifacts / "dashboard-segments.png")
    assert page.errors == []
