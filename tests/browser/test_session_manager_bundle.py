"""The minified session manager: under 6 KB gzipped, and working from a plain <script> tag."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

from sessions_app.models import BehaviorEvent, UserSession

pytestmark = pytest.mark.browser

ROOT = Path(settings.BASE_DIR)
SIZE_BUDGET = 6 * 1024


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """Build with the project's pinned minifier (npm ci by `make test`) into a scratch folder."""
    if shutil.which("node") is None or not (ROOT / "node_modules" / "esbuild").is_dir():
        if os.environ.get("CI"):
            pytest.fail("node_modules is missing: `make test` runs npm ci first")
        pytest.skip("run `npm ci` (make test does) to build the minified session manager")
    out = tmp_path_factory.mktemp("session-manager-dist")
    subprocess.run(["node", str(ROOT / "static/session/build.mjs"), str(out)], check=True, cwd=ROOT, timeout=120)
    return out


@pytest.mark.parametrize("name", ["session-manager.min.js", "session-manager.min.mjs"])
def test_minified_and_gzipped_bundle_is_under_6_kb(bundle, name):
    raw = (bundle / name).read_bytes()
    size = len(gzip.compress(raw, compresslevel=9))
    print(f"{name}: {len(raw)} bytes minified, {size} bytes gzipped")
    assert size < SIZE_BUDGET


def test_plain_script_tag_installs_the_global_and_tracks(chromium, server, site, bundle):
    """One classic <script> tag and the README's calls: a session opens and an event is stored."""
    html = f"""<!doctype html><html><head><title>Plain</title>
      <script src="/__plain__/session-manager.min.js"></script></head><body><script>
      sessionManager.init({{ siteKey: "{site.publishable_key}", consent: {{ analytics: true }}, autoPageViews: false }})
        .then(() => {{ window.messageId = sessionManager.trackEvent('signup', {{ plan: 'pro' }}, 'conversion');
                       return sessionManager.flush() }})
        .then(() => {{ window.done = true }})
    </script></body></html>"""
    context = chromium.new_context(base_url=server.url)
    try:
        context.route(
            f"{server.url}/__plain__/session-manager.min.js",
            lambda route: route.fulfill(
                status=200, content_type="text/javascript", body=(bundle / "session-manager.min.js").read_text()
            ),
        )
        context.route(
            f"{server.url}/__plain__/page", lambda route: route.fulfill(status=200, content_type="text/html", body=html)
        )
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server.url + "/__plain__/page")
        page.wait_for_function("() => window.done === true")
        session_id = page.evaluate("() => sessionManager.getSessionId()")
        message_id = page.evaluate("() => window.messageId")
        event = BehaviorEvent.objects.get(message_id=message_id)
        assert event.session == UserSession.objects.get(public_id=session_id)
        assert (event.event_type, event.event_name, event.properties) == ("conversion", "signup", {"plan": "pro"})
        assert errors == []
    finally:
        context.close()
