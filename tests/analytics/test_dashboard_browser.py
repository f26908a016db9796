"""The dashboard in a real browser: Debian's Chromium driven by Playwright against an ASGI server.

The server (uvicorn, HTTP and websockets) runs in a thread of the test process so it
reads the test database on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import csv
import io
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from django.db import connection

from tests.federation.factories import NeuronFactory
from tests.sessions_app.factories import BehaviorEventFactory, UserSessionFactory

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PORT = 8174
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
PASSWORD = "pw-operator-browser-1"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _require_chromium():
    """Skipped on a machine without Debian's Chromium; in CI (which installs it) that is a failure."""
    if os.path.exists(CHROMIUM):
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: .ci/run and `make chromium` install it")
    pytest.skip(f"{CHROMIUM} is not installed (make chromium)")


@pytest.fixture
def asgi_server(settings) -> Iterator[str]:
    settings.DASHBOARD_TICK_SECONDS = 0.5
    from config.asgi import application

    server = uvicorn.Server(
        uvicorn.Config(
            application, host="127.0.0.1", port=PORT, log_level="warning", lifespan="off", ws="websockets-sansio"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the ASGI server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{PORT}"
    server.should_exit = True
    thread.join(timeout=10)
    if connection.vendor == "postgresql":
        # The server's worker threads keep their connections open; end them so the test
        # database can be dropped at the end of the run.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_user("operator", "op@example.com", PASSWORD, is_staff=True)


@pytest.fixture
def seeded(operator):
    """A site with sessions on several devices and countries, and some events."""
    neuron = NeuronFactory(slug="shop")
    sessions = []
    for index, (device, country) in enumerate(
        [("desktop", "GB"), ("mobile", "FR"), ("mobile", "GB"), ("tablet", "DE"), ("desktop", "FR")]
    ):
        session = UserSessionFactory(neuron=neuron, device_type=device, country=country, landing_page=f"/p{index}")
        for path in ("/", "/pricing"):
            BehaviorEventFactory(session=session, page_path=path)
        sessions.append(session)
    return neuron, sessions


@pytest.fixture
def page(asgi_server, monkeypatch):
    """A logged-in operator's page; console errors are collected in page.errors."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls the test
    # makes between browser steps are ordinary blocking calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page = context.new_page()
        page.errors = []
        page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.goto(f"{asgi_server}/dashboard/")
        page.fill("#id_username", "operator")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(f"{asgi_server}/dashboard/")
        page.base = asgi_server
        yield page
        context.close()
        browser.close()


def tile(page, name: str) -> int:
    return int(page.locator(f'.tile [data-live="{name}"]').inner_text())


def test_overview_draws_live_charts_and_is_saved_as_an_artifact(seeded, page):
    """After logging in the overview connects live, draws its charts and logs no console error."""
    page.wait_for_selector("#live-status[data-state=live]", timeout=10_000)
    page.wait_for_selector("#live-chart canvas")
    assert page.locator("#live-chart").get_attribute("data-drawn") == "true"
    assert "/pricing" in page.locator("table").first.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)
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
