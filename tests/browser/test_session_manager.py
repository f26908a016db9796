"""static/session/session-manager.js in Chromium against a live server: sessions and consent."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from sessions_app.models import UserSession
from tests.browser.conftest import rotation_due

pytestmark = pytest.mark.browser


CONSENT_ALL_OFF = {"analytics": False, "personalization": False, "marketing": False, "fingerprinting": False}


def test_init_creates_a_session_with_landing_page_referrer_and_utm(open_page, site):
    """The first page view opens one session carrying where the visitor came from."""
    page = open_page(site.publishable_key, path="/__test__/landing?utm_source=newsletter&utm_campaign=spring")
    session_id = page.js("() => sm.getSessionId()")
    session = UserSession.objects.get(public_id=session_id)
    assert session.neuron == site
    assert session.landing_page == "/__test__/landing?utm_source=newsletter&utm_campaign=spring"
    assert (session.utm_source, session.utm_campaign) == ("newsletter", "spring")
    assert session.browser == "HeadlessChrome" or session.browser.startswith("Chrom")
    state = page.stored_state(site.publishable_key)
    assert state["sid"] == session_id and state["aid"] == session.anonymous_id
    assert page.paths() == ["create"]
    assert page.errors == []


def test_reload_restores_the_session_from_local_storage_without_a_new_one(open_page, site):
    """A second page of the visit reuses the stored session: no second create."""
    page = open_page(site.publishable_key)
    first = page.js("() => sm.getSessionId()")
    page.page.reload()
    page.wait_for("() => window.sm && sm.getSessionId()")
    assert page.js("() => sm.getSessionId()") == first
    assert page.paths() == ["create"]
    assert UserSession.objects.count() == 1


def test_cookie_fallback_keeps_the_session_when_local_storage_is_blocked(open_page, site):
    """With localStorage throwing (blocked storage), the state lives in a first-party cookie."""
    blocked = """Object.defineProperty(window, 'localStorage', {
        get() { throw new DOMException('blocked', 'SecurityError') } })"""
    page = open_page(site.publishable_key, init_script=blocked)
    first = page.js("() => sm.getSessionId()")
    assert page.js("() => sm.getCurrentSession().storage") == "cookie"
    cookies = {c["name"]: c for c in page.page.context.cookies()}
    cookie = cookies["spe_" + site.publishable_key]
    assert cookie["sameSite"] == "Lax"
    page.page.reload()
    page.wait_for("() => window.sm && sm.getSessionId()")
    assert page.js("() => sm.getSessionId()") == first
    assert UserSession.objects.count() == 1


def test_expired_stored_session_is_restored_as_a_new_session_of_the_same_visitor(open_page, site):
    """Coming back after the idle timeout: restore gives a new session with the same anonymous id."""
    page = open_page(site.publishable_key)
    first = UserSession.objects.get(public_id=page.js("() => sm.getSessionId()"))
    past = timezone.now() - timedelta(hours=2)
    UserSession.objects.filter(pk=first.pk).update(started_at=past, last_activity_at=past, expires_at=past)
    # The browser also believes it expired (its own clock estimate), so the next page restores.
    page.js(
        "k => { const s = JSON.parse(localStorage.getItem('spe:' + k)); s.exp = 0; "
        "localStorage.setItem('spe:' + k, JSON.stringify(s)) }",
        site.publishable_key,
    )
    page.page.reload()
    page.wait_for("() => window.sm && sm.getSessionId()")
    second = page.js("() => sm.getSessionId()")
    assert second != str(first.public_id)
    create = json.loads(page.api_requests[-1]["body"])
    assert create["restore"]["sessionId"] == str(first.public_id)
    assert UserSession.objects.get(public_id=second).anonymous_id == first.anonymous_id


def test_opt_in_without_consent_sends_nothing_but_the_session_creation(open_page, site, settings):
    """Opt-in mode, no choice made: events, page views and heartbeats never leave the browser."""
    settings.CONSENT_MODE = "opt-in"
    page = open_page(site.publishable_key, autoPageViews=True, flushInterval=100, heartbeatInterval=200)
    assert page.js("() => sm.getCurrentSession().consent") == {**CONSENT_ALL_OFF, "saleSharing": False}
    assert page.js("() => sm.trackEvent('click', {x: 1})") is None
    page.page.mouse.move(10, 10)
    page.page.mouse.move(20, 30)
    page.js("() => { history.pushState({}, '', '/__test__/elsewhere'); return sm.flush() }")
    page.page.wait_for_timeout(800)
    page.page.goto(page.server.url + "/__test__/other")
    page.wait_for("() => window.sm && sm.getSessionId()")
    page.page.wait_for_timeout(300)
    assert page.paths() == ["create"]
    create = json.loads(page.api_requests[0]["body"])
    assert "consent" not in create


def test_gpc_is_sent_and_overrides_sale_sharing_even_in_opt_out_mode(open_page, site, settings):
    """navigator.globalPrivacyControl: sent with the session, and sale/sharing is off whatever was chosen."""
    settings.CONSENT_MODE = "opt-out"
    page = open_page(
        site.publishable_key,
        init_script="Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', { get: () => true })",
        consent={"analytics": True, "saleSharing": True, "marketing": True},
    )
    create = json.loads(page.api_requests[0]["body"])
    assert create["gpc"] is True
    assert create["consent"] == {"analytics": True, "saleSharing": False, "marketing": False}
    session = UserSession.objects.get(public_id=page.js("() => sm.getSessionId()"))
    assert session.gpc is True
    assert session.consent["saleSharing"] is False and session.consent["marketing"] is False
    assert session.consent["analytics"] is True
    consent = page.js("() => sm.updateConsent({ saleSharing: true })")
    assert consent["saleSharing"] is False
    session.refresh_from_db()
    assert session.consent["saleSharing"] is False


def test_fingerprint_is_sent_only_after_fingerprinting_consent(open_page, site, settings):
    """No fingerprint while undecided; with consent, the documented signals and their hash."""
    settings.CONSENT_MODE = "opt-in"
    page = open_page(site.publishable_key, consent={"analytics": True})
    assert all("fingerprint" not in (r["body"] or "") for r in page.api_requests)
    session = UserSession.objects.get(public_id=page.js("() => sm.getSessionId()"))
    assert session.fingerprint is None
    page.js("() => sm.updateConsent({ fingerprinting: true })")
    session.refresh_from_db()
    fp = session.fingerprint
    assert fp is not None and len(fp.fingerprint_hash) == 64
    assert set(fp.components) <= {
        "screen",
        "pixelRatio",
        "timezone",
        "languages",
        "platform",
        "cores",
        "memory",
        "touchPoints",
    }
    page.js("() => sm.updateConsent({ fingerprinting: false })")
    session.refresh_from_db()
    assert session.fingerprint is None


def test_token_rotation_mid_session_is_adopted_without_losing_the_session(open_page, site, settings):
    """A heartbeat that rotates the token: the client switches to the new one at once."""
    settings.SESSION_TOKEN_GRACE_PERIOD = timedelta(0)  # the old token dies immediately
    page = open_page(site.publishable_key, consent={"analytics": True}, heartbeatInterval=300)
    session_id = page.js("() => sm.getSessionId()")
    first = page.stored_state(site.publishable_key)["tok"]
    rotation_due(session_id)
    page.page.mouse.move(5, 5)
    page.page.mouse.move(50, 50)
    page.wait_for("([k, t]) => JSON.parse(localStorage.getItem('spe:' + k)).tok !== t", [site.publishable_key, first])
    second = page.stored_state(site.publishable_key)["tok"]
    # The next call goes out with the new token and reaches the same session.
    result = page.js("() => sm.exportData()")
    assert result["session"]["sessionId"] == session_id
    assert page.api_requests[-1]["headers"]["authorization"] == f"Bearer {second}"
    assert "restore" not in (page.api_requests[-1]["body"] or "")
    assert UserSession.objects.count() == 1


def test_a_second_tab_picks_up_the_token_another_tab_rotated(open_page, site, settings):
    """Two tabs share one session; a rotation in one does not strand the other."""
    settings.SESSION_TOKEN_GRACE_PERIOD = timedelta(0)
    first_tab = open_page(site.publishable_key, consent={"analytics": True}, heartbeatInterval=300)
    second_tab = open_page(site.publishable_key, context=first_tab.page.context)
    assert second_tab.js("() => sm.getSessionId()") == first_tab.js("() => sm.getSessionId()")
    before = first_tab.stored_state(site.publishable_key)["tok"]
    rotation_due(first_tab.js("() => sm.getSessionId()"))
    first_tab.page.bring_to_front()
    first_tab.page.mouse.move(5, 5)
    first_tab.page.mouse.move(60, 60)
    first_tab.wait_for(
        "([k, t]) => JSON.parse(localStorage.getItem('spe:' + k)).tok !== t", [site.publishable_key, before]
    )
    exported = second_tab.js("() => sm.exportData()")
    assert exported["session"]["sessionId"] == first_tab.js("() => sm.getSessionId()")
    assert UserSession.objects.count() == 1


def test_heartbeat_after_idle_timeout_restores_into_a_new_session(open_page, site):
    """A heartbeat answered 401 (session expired server-side) restores, then beats again."""
    page = open_page(site.publishable_key, consent={"analytics": True}, heartbeatInterval=300)
    first = UserSession.objects.get(public_id=page.js("() => sm.getSessionId()"))
    past = timezone.now() - timedelta(hours=1)
    UserSession.objects.filter(pk=first.pk).update(last_activity_at=past, expires_at=past)
    page.page.mouse.move(5, 5)
    page.page.mouse.move(70, 70)
    second = page.wait_for("(s) => sm.getSessionId() !== s && sm.getSessionId()", str(first.public_id))
    assert page.js("() => smLog.some(e => e.name === 'session')")
    new = UserSession.objects.get(public_id=second)
    assert new.anonymous_id == first.anonymous_id
    assert new.consent["analytics"] is True


def test_reset_forgets_the_user_and_starts_a_new_visitor(open_page, site, settings):
    """Logout: the old session ends, a new anonymous visitor begins with the same consent."""
    page = open_page(site.publishable_key, consent={"analytics": True})
    page.js("() => sm.setUserId('customer-42')")
    old = UserSession.objects.select_related("profile").get(public_id=page.js("() => sm.getSessionId()"))
    assert old.profile is not None and old.profile.user_id_hash
    after = page.js("() => sm.reset()")
    assert after["userId"] is None and after["sessionId"] != str(old.public_id)
    assert after["anonymousId"] != old.anonymous_id
    page.wait_for("() => true")
    old.refresh_from_db()
    new = UserSession.objects.get(public_id=after["sessionId"])
    assert new.profile is None and new.consent["analytics"] is True
    assert old.ended_at is not None


def test_export_then_import_carries_the_visitor_to_another_browser(open_page, site, chromium):
    """Portability: the export holds the visitor's data (not the token); importing continues as them."""
    first = open_page(site.publishable_key, consent={"analytics": True, "personalization": True})
    first.js("() => sm.setUserId('customer-7')")
    exported = first.js("() => sm.exportData()")
    token = first.stored_state(site.publishable_key)["tok"]
    assert token not in json.dumps(exported)
    assert exported["userId"] == "customer-7" and exported["session"]["identified"] is True
    other = open_page(site.publishable_key)
    imported = other.js("(blob) => sm.importData(JSON.stringify(blob))", exported)
    assert imported["anonymousId"] == exported["anonymousId"]
    session = UserSession.objects.select_related("profile").get(public_id=imported["sessionId"])
    assert session.anonymous_id == exported["anonymousId"]
    assert session.consent["personalization"] is True
    source = UserSession.objects.select_related("profile").get(public_id=exported["session"]["sessionId"])
    assert session.profile_id == source.profile_id


def test_wrong_site_key_reports_an_error_and_creates_nothing(chromium, server, site):
    """A misconfigured key is reported through on('error') and the init promise, without retry storms."""
    context = chromium.new_context(base_url=server.url)
    try:
        page = context.new_page()
        page.goto(server.url + "/static/session/session-manager.js")
        result = page.evaluate(
            """async () => {
                const { createSessionManager } = await import('/static/session/session-manager.js')
                const sm = createSessionManager()
                const errors = []
                sm.on('error', (e) => errors.push(e))
                try { await sm.init({ siteKey: 'pk_wrong' }) } catch (e) { return { rejected: e.status, errors } }
                return { rejected: null, errors }
            }"""
        )
        assert result["rejected"] == 401
        assert [e["status"] for e in result["errors"]] == [401]
        assert UserSession.objects.count() == 0
    finally:
        context.close()


def test_consent_choices_made_in_the_browser_land_in_the_consent_ledger(open_page, site, settings):
    """Grant and withdrawal through updateConsent are both provable afterwards."""
    from privacy.models import ConsentRecord

    settings.CONSENT_MODE = "opt-in"
    page = open_page(site.publishable_key)
    session = UserSession.objects.get(public_id=page.js("() => sm.getSessionId()"))
    page.js("() => sm.updateConsent({ analytics: true })")
    page.js("() => sm.updateConsent({ analytics: false })")
    rows = list(
        ConsentRecord.objects.filter(session=session, purpose="analytics")
        .order_by("recorded_at", "id")
        .values_list("granted", "ip_truncated")
    )
    assert [granted for granted, _ in rows][-2:] == [True, False]
    assert all(ip == "127.0.0.0" for _, ip in rows)
