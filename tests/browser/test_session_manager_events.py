"""static/session/session-manager.js in Chromium against a live server: events end to end."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from sessions_app.models import AnonymousTrafficCount, BehaviorEvent, UserSession
from tests.browser.conftest import rotation_due, wait_until

pytestmark = pytest.mark.browser

SOURCE = Path(django_settings.BASE_DIR) / "static" / "session" / "session-manager.js"


def stored_ids(**filters) -> set[str]:
    return set(BehaviorEvent.objects.filter(**filters).values_list("message_id", flat=True))


def track_many(page, n: int, name: str = "click") -> list[str]:
    return page.js(f"() => Array.from({{length: {n}}}, (_, i) => sm.trackEvent('{name}', {{ i }}))")


def test_events_arrive_in_a_batch_and_are_stored_once(open_page, site):
    """A full batch goes out at once, every event with its messageId; a replay is all duplicates."""
    page = open_page(site.publishable_key, consent={"analytics": True}, batchSize=5, flushInterval=60_000)
    ids = track_many(page, 5)
    page.wait_for("() => smLog.some(e => e.name === 'flush')")
    flush = page.js("() => smLog.find(e => e.name === 'flush').data")
    assert (flush["stored"], flush["duplicates"]) == (5, 0)
    session = UserSession.objects.get(public_id=page.js("() => sm.getSessionId()"))
    assert stored_ids(session=session) == set(ids)
    event = BehaviorEvent.objects.get(message_id=ids[2])
    assert (event.event_type, event.event_name, event.properties) == ("custom", "click", {"i": 2})
    assert event.page_path == "/__test__/page" and event.page_title == "Test page"
    sent = [r for r in page.api_requests if r["url"].endswith("/events")]
    assert len(sent) == 1
    body = json.loads(sent[0]["body"])
    assert set(body) == {"events", "sentAt"} and len(body["events"]) == 5
    # The same request again (a retry after a lost answer) stores nothing new.
    replay = page.js(
        """([url, auth, body]) => fetch(url, {method: 'POST', body,
            headers: {'Content-Type': 'application/json', Authorization: auth}}).then(r => r.json())""",
        [sent[0]["url"], sent[0]["headers"]["authorization"], sent[0]["body"]],
    )
    assert replay == {"stored": 0, "duplicates": 5, "anonymous": 0}
    assert BehaviorEvent.objects.count() == 5
    session.refresh_from_db()
    assert session.event_count == 5


def test_partial_batch_is_sent_on_the_flush_timer(open_page, site):
    """Fewer events than a batch wait for the timer, then go together."""
    page = open_page(site.publishable_key, consent={"analytics": True}, batchSize=50, flushInterval=700)
    ids = track_many(page, 3)
    assert page.js("() => sm.getCurrentSession().queued") == 3
    page.wait_for("() => sm.getCurrentSession().queued === 0")
    assert len([r for r in page.api_requests if r["url"].endswith("/events")]) == 1
    assert stored_ids() == set(ids)


def test_offline_queue_survives_a_reload_and_drains_once_the_server_is_back(open_page, site, server):
    """Server down: events wait in localStorage (across a reload), then arrive exactly once."""
    page = open_page(site.publishable_key, consent={"analytics": True}, batchSize=5, flushInterval=200)
    # While the server is away the page itself still loads: serve the module from disk.
    page.page.context.route(
        f"{server.url}/static/session/session-manager.js",
        lambda route: route.fulfill(status=200, content_type="text/javascript", body=SOURCE.read_text()),
    )
    server.stop()
    ids = track_many(page, 7)
    page.wait_for("() => smLog.filter(e => e.name === 'error' && e.data.type === 'send').length >= 2")
    queued = page.js(
        "k => JSON.parse(localStorage.getItem('spe:' + k + ':queue')).map(e => e.messageId)", site.publishable_key
    )
    assert queued == ids
    page.page.reload()
    page.wait_for("() => window.sm && sm.getSessionId()")
    assert page.js("() => sm.getCurrentSession().queued") == 7
    server.start()
    page.wait_for("() => sm.getCurrentSession().queued === 0", timeout=20_000)
    assert stored_ids() == set(ids)
    assert BehaviorEvent.objects.count() == 7


def test_lost_answer_is_retried_and_stored_once(open_page, site):
    """The server commits but the answer is lost: the retry carries the same messageIds."""
    page = open_page(site.publishable_key, consent={"analytics": True}, batchSize=4, flushInterval=60_000)
    state = {"dropped": 0}

    def drop_first_answer(route):
        if state["dropped"]:
            route.continue_()
            return
        state["dropped"] = 1
        route.fetch()  # reaches the server, which stores the batch
        route.abort("connectionreset")

    page.page.route("**/events", drop_first_answer)
    ids = track_many(page, 4)
    page.wait_for("() => smLog.some(e => e.name === 'flush')")
    flush = page.js("() => smLog.find(e => e.name === 'flush').data")
    assert (flush["stored"], flush["duplicates"]) == (0, 4)
    assert stored_ids() == set(ids) and BehaviorEvent.objects.count() == 4


# Playwright does not report a beacon sent by an unloading page, so the page records its
# own sendBeacon calls in sessionStorage, which the next page of the tab can read.
RECORD_BEACONS = """
  const send = navigator.sendBeacon.bind(navigator)
  navigator.sendBeacon = (url, body) => {
    const accepted = send(url, body)
    const seen = JSON.parse(sessionStorage.getItem('beacons') || '[]')
    seen.push({ url, body: String(body), accepted })
    sessionStorage.setItem('beacons', JSON.stringify(seen))
    return accepted
  }
"""


def test_send_beacon_on_navigation_delivers_the_last_batch(open_page, site):
    """Leaving the page hands the queued events to sendBeacon, which delivers them after unload."""
    page = open_page(
        site.publishable_key,
        consent={"analytics": True},
        batchSize=50,
        flushInterval=60_000,
        init_script=RECORD_BEACONS,
    )
    ids = track_many(page, 3, name="last-words")
    assert page.js("() => sm.getCurrentSession().queued") == 3
    page.page.click("#link")
    page.page.wait_for_url("**/__test__/other")
    page.wait_for("() => window.sm && sm.getSessionId()")
    wait_until(lambda: BehaviorEvent.objects.count() == 3)
    assert stored_ids() == set(ids)
    beacons = page.js("() => JSON.parse(sessionStorage.getItem('beacons'))")
    assert len(beacons) == 1 and beacons[0]["accepted"] is True
    assert beacons[0]["url"].endswith(f"/api/sessions/{page.js('() => sm.getSessionId()')}/events")
    body = json.loads(beacons[0]["body"])
    assert body["token"] == page.stored_state(site.publishable_key)["tok"]
    assert [e["messageId"] for e in body["events"]] == ids
    # No fetch carried them: the beacon did, and the next page finds nothing left to send.
    assert not [r for r in page.api_requests if r["url"].endswith("/events")]
    assert page.js("() => sm.getCurrentSession().queued") == 0


def test_opt_in_consent_gates_events_until_granted_and_after_withdrawal(open_page, site, settings):
    """Nothing before consent; a page view and events once granted; after withdrawal nothing more,
    and the events stored under the consent are deleted (privacy.ledger)."""
    settings.CONSENT_MODE = "opt-in"
    page = open_page(site.publishable_key, autoPageViews=True, batchSize=50, flushInterval=300)
    assert page.js("() => sm.trackEvent('too-early')") is None
    page.page.wait_for_timeout(600)
    assert page.paths() == ["create"]
    page.js("() => sm.updateConsent({ analytics: true })")
    granted = page.js("() => sm.trackEvent('after-consent')")
    page.wait_for("() => sm.getCurrentSession().queued === 0 && smLog.some(e => e.name === 'flush')")
    events = list(BehaviorEvent.objects.order_by("id").values_list("event_type", "event_name"))
    assert events == [("page_view", "Test page"), ("custom", "after-consent")]
    assert BehaviorEvent.objects.get(event_name="after-consent").message_id == granted
    page.js("() => sm.updateConsent({ analytics: false })")
    assert page.js("() => sm.trackEvent('after-withdrawal')") is None
    page.page.wait_for_timeout(600)
    assert BehaviorEvent.objects.count() == 0
    assert not AnonymousTrafficCount.objects.exists()


def test_single_page_navigation_records_each_page_view(open_page, site):
    """pushState and the back button each record a page view with the new path, title and referrer."""
    page = open_page(site.publishable_key, consent={"analytics": True}, autoPageViews=True, flushInterval=300)
    page.js("() => { history.pushState({}, '', '/__test__/products'); document.title = 'Products' }")
    page.js("() => { history.pushState({}, '', '/__test__/cart?step=1'); document.title = 'Cart' }")
    page.js("() => history.replaceState({}, '', '/__test__/cart?step=1')")  # same page: no new view
    page.js("() => history.back()")
    page.wait_for("() => location.pathname === '/__test__/products'")
    page.page.wait_for_timeout(100)
    page.js("() => sm.flush()")
    page.wait_for("() => sm.getCurrentSession().queued === 0")
    views = list(
        # Insertion order is the client's order (one request in flight at a time); corrected
        # timestamps carry each request's latency, which a loaded machine can make reorder.
        BehaviorEvent.objects.filter(event_type="page_view")
        .order_by("id")
        .values_list("page_path", "page_title", "referrer")
    )
    base = page.server.url
    assert [v[0] for v in views] == ["/__test__/page", "/__test__/products", "/__test__/cart", "/__test__/products"]
    assert views[1][1] == "Products" and views[2][1] == "Cart"
    assert views[2][2] == f"{base}/__test__/products"
    session = UserSession.objects.get(public_id=page.js("() => sm.getSessionId()"))
    assert session.page_view_count == 4


def test_token_rotation_mid_session_keeps_events_flowing_to_the_same_session(open_page, site, settings):
    """After a rotation (old token dead at once) the next batch uses the new token, same session."""
    settings.SESSION_TOKEN_GRACE_PERIOD = timedelta(0)
    page = open_page(
        site.publishable_key, consent={"analytics": True}, heartbeatInterval=300, batchSize=3, flushInterval=60_000
    )
    session_id = page.js("() => sm.getSessionId()")
    before = page.stored_state(site.publishable_key)["tok"]
    rotation_due(session_id)
    page.page.mouse.move(3, 3)
    page.page.mouse.move(40, 40)
    page.wait_for("([k, t]) => JSON.parse(localStorage.getItem('spe:' + k)).tok !== t", [site.publishable_key, before])
    ids = track_many(page, 3)
    page.wait_for("() => sm.getCurrentSession().queued === 0")
    assert stored_ids(session__public_id=session_id) == set(ids)
    assert page.js("() => sm.getSessionId()") == session_id
    assert UserSession.objects.count() == 1


@pytest.mark.parametrize("how", ["ended-past-grace", "token-revoked"])
def test_events_after_the_session_is_gone_restore_and_are_resent(open_page, site, how):
    """409 (ended past the grace period) or 401: restore, then the batch lands in the new session."""
    page = open_page(site.publishable_key, consent={"analytics": True}, batchSize=3, flushInterval=60_000)
    first = UserSession.objects.get(public_id=page.js("() => sm.getSessionId()"))
    past = timezone.now() - timedelta(hours=1)
    if how == "ended-past-grace":
        UserSession.objects.filter(pk=first.pk).update(last_activity_at=past, expires_at=past, ended_at=past)
    else:
        UserSession.objects.filter(pk=first.pk).update(token_hash="0" * 64, previous_token_hash=None)
    ids = track_many(page, 3)
    second = page.wait_for(
        "(s) => sm.getSessionId() !== s && sm.getCurrentSession().queued === 0 && sm.getSessionId()",
        str(first.public_id),
    )
    new = UserSession.objects.get(public_id=second)
    assert new.anonymous_id == first.anonymous_id
    assert stored_ids(session=new) == set(ids)
    assert not BehaviorEvent.objects.filter(session=first).exists()
    statuses = [r for r in page.api_requests if r["url"].endswith("/events")]
    assert len(statuses) == 2  # the refused attempt, then the resend


def test_demo_page_tracks_clicks_after_consent(chromium, server, settings):
    """/demo/ runs the session manager against this server for the demo site."""
    from federation.services import neuron_create

    settings.CONSENT_MODE = "opt-in"
    neuron = neuron_create(slug=settings.DEMO_NEURON_SLUG, name="Demo shop").neuron
    context = chromium.new_context(base_url=server.url)
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server.url + "/demo/")
        page.wait_for_function("() => document.querySelector('[data-field=sessionId]').textContent.length > 30")
        assert page.is_visible("#banner")
        page.click("#consent-analytics")
        page.wait_for_selector("#banner", state="hidden")
        page.click("#add-to-cart")
        page.click("nav a[href='/demo/products']")
        assert page.title() == "Products · Demo shop"
        page.click("#flush")
        page.wait_for_function("() => document.querySelector('[data-field=queued]').textContent === '0'")
        wait_until(lambda: BehaviorEvent.objects.filter(neuron=neuron).count() == 3)
        rows = set(BehaviorEvent.objects.values_list("event_type", "event_name"))
        assert rows == {
            ("page_view", "Home · Demo shop"),
            ("custom", "add_to_cart"),
            ("page_view", "Products · Demo shop"),
        }
        assert errors == []
    finally:
        context.close()


def test_demo_page_explains_how_to_create_the_demo_site(chromium, server):
    """Without the demo site the page says how to make one instead of failing."""
    context = chromium.new_context(base_url=server.url)
    try:
        page = context.new_page()
        page.goto(server.url + "/demo/")
        assert "No demo site yet" in page.inner_text("[role=alert]")
    finally:
        context.close()
