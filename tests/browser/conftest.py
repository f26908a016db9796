"""Browser tests: Debian's Chromium driven by Playwright against a live test server.

Chromium comes from the distribution (`apt-get install chromium`, done by .ci/run and the
Makefile); Playwright never downloads a browser here. Without /usr/bin/chromium these
tests are skipped on a developer machine and fail in CI (CI=true), so CI cannot go green
without running them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.servers.basehttp import WSGIServer
from django.utils import timezone
from pytest_django.live_server_helper import LiveServer

from sessions_app.models import UserSession
from tests.federation.factories import NeuronFactory

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _require_chromium() -> None:
    if os.path.exists(CHROMIUM) and shutil.which("node") is not None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: .ci/run installs it (apt-get install chromium)")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")


class _BrowserTestWSGIServer(WSGIServer):
    """The live server for browser tests.

    - A thread per connection, so a socket Chromium opens ahead of time and leaves idle
      cannot hold up the requests behind it.
    - One request at a time through Django, which keeps SQLite's shared in-memory test
      connection to one thread at a time.
    - One request per connection (not a ThreadingMixIn, so Django answers
      `Connection: close`), and stopping closes every open socket: a stopped server
      answers nothing, as a backend that went away.
    - The port can be bound again at once, so a test can bring the server back.
    """

    def __init__(self, *args: Any, connections_override: Any = None, allow_reuse_address: bool = True, **kw: Any):
        super().__init__(*args, allow_reuse_address=True, **kw)
        self.connections_override = connections_override or {}
        self._django = threading.Lock()
        self._sockets: set[Any] = set()

    def get_app(self) -> Any:
        app = super().get_app()

        def one_at_a_time(environ: Any, start_response: Any) -> list[bytes]:
            with self._django:
                response = app(environ, start_response)
                try:
                    return list(response)
                finally:
                    if hasattr(response, "close"):
                        response.close()

        return one_at_a_time

    def process_request(self, request: Any, client_address: Any) -> None:
        self._sockets.add(request)
        threading.Thread(target=self._serve, args=(request, client_address), daemon=True).start()

    def _serve(self, request: Any, client_address: Any) -> None:
        from django.db import connections

        for alias, conn in self.connections_override.items():
            connections[alias] = conn
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self._sockets.discard(request)
            self.shutdown_request(request)
            connections.close_all()

    def server_close(self) -> None:
        super().server_close()
        for sock in list(self._sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class BrowserTestServer:
    """pytest-django's LiveServer on a fixed port, which can be stopped and restarted."""

    def __init__(self, address: str) -> None:
        self._server = self._start(address)
        self.host = self._server.thread.host
        self.port = self._server.thread.port
        self.url = f"http://{self.host}:{self.port}"

    @staticmethod
    def _start(address: str) -> LiveServer:
        server = LiveServer(address, start=False)
        server.thread.server_class = _BrowserTestWSGIServer
        server.start()
        return server

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def start(self) -> None:
        if self._server is None:
            self._server = self._start(f"{self.host}:{self.port}")


@pytest.fixture(scope="module")
def chromium(django_db_setup) -> Iterator[Any]:
    """One browser per test module.

    Playwright's sync API keeps an asyncio loop running in the test thread while it is
    started, which Django's ORM would take for async code. The test thread's queries are
    plain synchronous ones, so the check is lifted for exactly as long as the browser
    lives (module scope: never beyond this module's tests).
    """
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()


@pytest.fixture
def server(transactional_db, chromium) -> Iterator[BrowserTestServer]:
    # SPE_BROWSER_TEST_ADDRESS pins the port (engineers sharing a machine use their own range).
    srv = BrowserTestServer(os.environ.get("SPE_BROWSER_TEST_ADDRESS", "127.0.0.1:0"))
    yield srv
    srv.stop()


@pytest.fixture
def site(transactional_db):
    return NeuronFactory()


class BrowserPage:
    """A Playwright page plus what the tests read back: API requests and console errors."""

    def __init__(self, page: Any, server: BrowserTestServer) -> None:
        self.page = page
        self.server = server
        self.api_requests: list[dict[str, Any]] = []
        self.errors: list[str] = []
        page.on("request", self._on_request)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))

    def _on_request(self, request: Any) -> None:
        if "/api/sessions/" in request.url:
            self.api_requests.append(
                {"method": request.method, "url": request.url, "body": request.post_data, "headers": request.headers}
            )

    def paths(self) -> list[str]:
        return [r["url"].split("/api/sessions/", 1)[1] for r in self.api_requests]

    def js(self, script: str, arg: Any = None) -> Any:
        return self.page.evaluate(script, arg)

    def wait_for(self, script: str, arg: Any = None, timeout: float = 10_000) -> Any:
        return self.page.wait_for_function(script, arg=arg, timeout=timeout).json_value()

    def stored_state(self, site_key: str) -> dict[str, Any]:
        return self.js("k => JSON.parse(localStorage.getItem('spe:' + k) || 'null')", site_key)


HARNESS = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title></head>
<body><a id="link" href="/__test__/other">next page</a>
<script type="module">
  import sessionManager from '/static/session/session-manager.js'
  window.smLog = []
  for (const name of ['ready', 'session', 'consent', 'error', 'flush']) {{
    sessionManager.on(name, (data) => window.smLog.push({{ name, data }}))
  }}
  window.sm = sessionManager
  window.smReady = sessionManager.init({options})
</script></body></html>"""


@pytest.fixture
def open_page(chromium, server) -> Iterator[Callable[..., BrowserPage]]:
    """open_page(site_key, **init options) -> a page running the session manager.

    Test pages live under /__test__/ on the live server's origin (served by Playwright's
    router, so the module, the storage and the API share one origin as on a real site).
    """
    contexts: list[Any] = []

    def _open(
        site_key: str,
        *,
        path: str = "/__test__/page",
        context: Any = None,
        init_script: str | None = None,
        title: str = "Test page",
        **options: Any,
    ) -> BrowserPage:
        if context is None:
            context = chromium.new_context(base_url=server.url)
            contexts.append(context)
            if init_script:
                context.add_init_script(init_script)
        opts = {"siteKey": site_key, "autoPageViews": False, "retryBase": 200, "retryMax": 1000, **options}

        def fulfil(route: Any) -> None:
            route.fulfill(
                status=200,
                content_type="text/html",
                body=HARNESS.format(title=title, options=json.dumps(opts)),
            )

        context.route(f"{server.url}/__test__/**", fulfil)
        page = BrowserPage(context.new_page(), server)
        page.page.goto(server.url + path)
        page.wait_for("() => window.sm && window.sm.getSessionId()")
        return page

    yield _open
    for context in contexts:
        context.close()


def rotation_due(session_id: str) -> None:
    """Make the session's next heartbeat rotate its token (once: the rotation resets the clock)."""
    UserSession.objects.filter(public_id=session_id).update(token_rotated_at=timezone.now() - timedelta(hours=1))


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.1) -> Any:
    """Poll a condition read from the database (the browser works asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
