"""Browser-test fixtures for the dashboard: Debian's Chromium driven by Playwright against an
ASGI server (uvicorn, HTTP and websockets) running in a thread of the test process, so it
reads the test database on SQLite and PostgreSQL alike."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from tests.federation.factories import NeuronFactory
from tests.helpers import end_server_threads_connections, grant_all
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
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
PASSWORD = "pw-operator-browser-1"


@pytest.fixture
def require_chromium():
    """Skipped on a machine without Debian's Chromium; in CI (which installs it) that is a failure."""
    if os.path.exists(CHROMIUM):
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: .ci/run and `make chromium` install it")
    pytest.skip(f"{CHROMIUM} is not installed (make chromium)")


@pytest.fixture
def artifacts() -> Path:
    """Where browser tests save their screenshots (artifacts/, not committed)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def asgi_server(settings, require_chromium) -> Iterator[str]:
    settings.DASHBOARD_TICK_SECONDS = 0.5
    from config.asgi import application

    # Port 0: the system picks a free port, so test runs sharing the machine never collide.
    server = uvicorn.Server(
        uvicorn.Config(
            application, host="127.0.0.1", port=0, log_level="warning", lifespan="off", ws="websockets-sansio"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the ASGI server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    end_server_threads_connections()


@pytest.fixture
def operator(django_user_model):
    """An operator: staff with every model permission of the project's apps."""
    return grant_all(django_user_model.objects.create_user("operator", "op@example.com", PASSWORD, is_staff=True))


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
