"""Probabilistic linking: the score, thresholds, consent, idempotency and withdrawal."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from sessions_app.identity import profile_find_for_user_id, profile_identify, profile_split
from sessions_app.linking import (
    identity_forget_fingerprints,
    identity_link_session,
    identity_link_sweep,
)
from sessions_app.models import (
    BridgeMethod,
    BridgeStatus,
    DeviceFingerprint,
    GlobalUserProfile,
    ProfileMerge,
    SessionBridge,
    UserSession,
)
from sessions_app.schedule import periodic_jobs
from sessions_app.tasks import link_session, link_sweep
from tests.federation.factories import NeuronFactory
from tests.sessions_app.factories import DeviceFingerprintFactory, UserSessionFactory

pytestmark = pytest.mark.django_db

CONSENTED = {"analytics": True, "personalization": True, "marketing": False, "fingerprinting": True}


def visit(neuron, *, fingerprint=None, when=None, consent=None, ip="81.2.69.0", browser="Chrome", **kwargs):
    """A session with fingerprinting consent, active for ten minutes from `when`."""
    when = when or timezone.now() - timedelta(hours=1)
    return UserSessionFactory(
        neuron=neuron,
        fingerprint=fingerprint,
        consent=consent or dict(CONSENTED),
        ip_truncated=ip,
        browser=browser,
        started_at=when,
        last_activity_at=when + timedelta(minutes=10),
        **kwargs,
    )


def profile_of(session) -> GlobalUserProfile | None:
    session.refresh_from_db()
    return session.profile


def test_same_fingerprint_merges_two_anonymous_devices_with_documented_confidence(neuron):
    """Same hash at one place, another browser, hours apart: w·2^(-gap/h) = 0.99·2^(-2h/180d) ≈ 0.99 merges."""
    fp = DeviceFingerprintFactory(neuron=neuron)
    now = timezone.now()
    first = visit(neuron, fingerprint=fp, when=now - timedelta(hours=3), ip="10.0.1.0")
    second = visit(neuron, fingerprint=fp, when=now - timedelta(minutes=50), ip="10.0.1.0", browser="Firefox")
    run = identity_link_sweep()
    assert (run.merged, run.suggested) == (1, 0)
    assert profile_of(first) == profile_of(second) is not None
    bridge = SessionBridge.objects.get()
    assert bridge.method == BridgeMethod.FINGERPRINT and bridge.status == BridgeStatus.MERGED
    signal = bridge.evidence["signals"]["fingerprint"]
    expected = 0.99 * 2 ** (-(signal["gapHours"]) / (180 * 24))
    assert bridge.confidence == pytest.approx(expected, abs=1e-3)
    assert signal["sharedBy"] == 2 and signal["fingerprintId"] == fp.pk
    assert set(bridge.evidence["sessions"]) == {str(first.public_id), str(second.public_id)}


def test_an_old_fingerprint_match_decays_to_a_suggestion(neuron):
    """A half-life (180 days) apart the fingerprint is worth half its weight: suggested, not merged."""
    fp = DeviceFingerprintFactory(neuron=neuron)
    now = timezone.now()
    old = visit(neuron, fingerprint=fp, when=now - timedelta(days=181), ip="10.0.1.0")
    new = visit(neuron, fingerprint=fp, when=now - timedelta(hours=1), ip="10.0.1.0", browser="Firefox")
    run = identity_link_sweep()
    assert (run.merged, run.suggested) == (0, 1)
    bridge = SessionBridge.objects.get()
    assert bridge.status == BridgeStatus.SUGGESTED and 0.45 < bridge.confidence < 0.55
    assert profile_of(old) != profile_of(new)
    assert not ProfileMerge.objects.exists()


def test_same_network_and_browser_alone_is_only_a_suggestion(neuron):
    """Network + browser family within the window scores at most 0.6: below the merge threshold."""
    a = visit(neuron)
    b = visit(neuron, when=timezone.now() - timedelta(minutes=30))
    identity_link_sweep()
    bridge = SessionBridge.objects.get()
    assert bridge.method == BridgeMethod.NETWORK and bridge.status == BridgeStatus.SUGGESTED
    assert bridge.confidence == pytest.approx(0.6, abs=0.01)
    assert profile_of(a) != profile_of(b)


def test_fingerprint_and_network_combine_by_noisy_or(neuron):
    """Two signals: 1 - (1 - fp)(1 - net)."""
    fp = DeviceFingerprintFactory(neuron=neuron)
    visit(neuron, fingerprint=fp)
    visit(neuron, fingerprint=fp, when=timezone.now() - timedelta(minutes=20))
    identity_link_sweep()
    bridge = SessionBridge.objects.get()
    f = bridge.evidence["signals"]["fingerprint"]["value"]
    n = bridge.evidence["signals"]["network"]["value"]
    assert bridge.confidence == pytest.approx(1 - (1 - f) * (1 - n), abs=1e-3)


def test_a_busy_office_network_links_nobody(neuron):
    """More profiles on one network than IDENTITY_NETWORK_MAX_PROFILES: the signal is ignored."""
    for _ in range(8):
        visit(neuron)
    assert identity_link_sweep().scored == 0
    assert not SessionBridge.objects.exists()


def test_a_fingerprint_common_to_three_profiles_is_only_suggested(neuron):
    """A hash on k profiles weighs 0.99/(k-1): a popular configuration is not one device."""
    fp = DeviceFingerprintFactory(neuron=neuron)
    for i in range(3):
        visit(neuron, fingerprint=fp, ip=f"10.{i}.0.0")
    run = identity_link_sweep()
    assert run.merged == 0 and run.suggested == 3
    assert all(b.evidence["signals"]["fingerprint"]["sharedBy"] == 3 for b in SessionBridge.objects.all())


def test_a_shared_family_device_never_merges_its_users(neuron):
    """A fingerprint on two users' profiles: users stay apart and the anonymous visit is not merged."""
    fp = DeviceFingerprintFactory(neuron=neuron)
    alice = visit(neuron, fingerprint=fp, ip="10.1.0.0")
    bob = visit(neuron, fingerprint=fp, ip="10.2.0.0")
    guest = visit(neuron, fingerprint=fp, ip="10.3.0.0")
    profile_identify(session=alice, user_id="alice")
    profile_identify(session=bob, user_id="bob")
    identity_link_sweep()
    assert profile_of(alice) != profile_of(bob)
    assert profile_of(guest) not in (profile_of(alice), profile_of(bob))
    assert not SessionBridge.objects.filter(method=BridgeMethod.FINGERPRINT, status=BridgeStatus.MERGED).exists()
    capped = SessionBridge.objects.filter(method=BridgeMethod.FINGERPRINT)
    assert capped and all(b.confidence <= 0.5 for b in capped)


def test_sessions_without_fingerprinting_consent_are_never_linked(neuron):
    """No fingerprinting consent on one side: no probabilistic link at all."""
    fp = DeviceFingerprintFactory(neuron=neuron)
    visit(neuron, fingerprint=fp)
    visit(neuron, fingerprint=fp, consent={**CONSENTED, "fingerprinting": False})
    assert identity_link_sweep().scored == 0
    assert not SessionBridge.objects.exists()


def test_an_anonymous_device_merges_into_the_identified_profile(neuron):
    """The identified profile survives a probabilistic merge; the device's sessions join it."""
    fp = DeviceFingerprintFactory(neuron=neuron)
    known = visit(neuron, fingerprint=fp, ip="10.1.0.0")
    profile_identify(session=known, user_id="u-1")
    cleared_cookies = visit(neuron, fingerprint=fp, ip="10.1.0.0", browser="Firefox")
    identity_link_sweep()
    user = profile_find_for_user_id(neuron=neuron, user_id="u-1")
    assert profile_of(cleared_cookies) == user
    assert user.merged_into is None


def test_sweep_twice_is_idempotent(neuron):
    """A second run finds nothing new: no extra merge, bridge or profile."""
    fp = DeviceFingerprintFactory(neuron=neuron)
    visit(neuron, fingerprint=fp, ip="10.1.0.0")
    visit(neuron, fingerprint=fp, ip="10.1.0.0", browser="Firefox")
    visit(neuron, ip="10.5.0.0")
    visit(neuron, ip="10.5.0.0")
    identity_link_sweep()
    state = (ProfileMerge.objects.count(), SessionBridge.objects.count(), GlobalUserProfile.objects.count())
    again = identity_link_sweep()
    assert again.merged == 0 and again.suggested == 0
    assert (ProfileMerge.objects.count(), SessionBridge.objects.count(), GlobalUserProfile.objects.count()) == state


def test_a_split_pair_is_not_merged_again(neuron):
    """After an operator splits a probabilistic merge, the linker leaves the pair alone."""
    fp = DeviceFingerprintFactory(neuron=neuron)
    a = visit(neuron, fingerprint=fp, ip="10.1.0.0")
    b = visit(neuron, fingerprint=fp, ip="10.1.0.0", browser="Firefox")
    identity_link_sweep()
    profile_split(profile=profile_of(a), actor="staff")
    identity_link_sweep()
    assert profile_of(a) != profile_of(b)
    assert SessionBridge.objects.get().status == BridgeStatus.REJECTED


def test_link_session_scores_only_that_sessions_links(neuron):
    """The per-session task links the new session; unrelated pairs wait for the sweep."""
    fp = DeviceFingerprintFactory(neuron=neuron)
    other_fp = DeviceFingerprintFactory(neuron=neuron)
    a = visit(neuron, fingerprint=fp, ip="10.1.0.0")
    b = visit(neuron, fingerprint=fp, ip="10.1.0.0", browser="Firefox")
    c = visit(neuron, fingerprint=other_fp, ip="10.3.0.0")
    d = visit(neuron, fingerprint=other_fp, ip="10.3.0.0", browser="Firefox")
    assert link_session(a.pk) == 1
    assert profile_of(a) == profile_of(b)
    assert profile_of(c) is None and profile_of(d) is None
    assert identity_link_session(session_id=c.pk).merged == 1


def test_creating_a_session_with_a_fingerprint_enqueues_linking_on_commit(
    site_client, django_capture_on_commit_callbacks
):
    """POST /create with a consented fingerprint links the device to its earlier visit after commit."""
    body = {"consent": {"fingerprinting": True, "analytics": True}, "fingerprint": {"hash": "f" * 32}}
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        first = site_client.post("/api/sessions/create", body, format="json").json()
        second = site_client.post("/api/sessions/create", body, format="json").json()
    assert len(callbacks) == 2
    a = UserSession.objects.get(public_id=first["sessionId"])
    b = UserSession.objects.get(public_id=second["sessionId"])
    assert a.anonymous_id != b.anonymous_id
    assert profile_of(a) == profile_of(b) is not None


def test_link_sweep_task_is_scheduled_and_runs(neuron):
    """The beat schedule declares the sweep; the task links recent sessions."""
    assert any(job["task"] == "sessions_app.tasks.link_sweep" for job in periodic_jobs())
    fp = DeviceFingerprintFactory(neuron=neuron)
    visit(neuron, fingerprint=fp, ip="10.1.0.0", when=timezone.now() - timedelta(minutes=20))
    visit(neuron, fingerprint=fp, ip="10.1.0.0", browser="Firefox", when=timezone.now() - timedelta(minutes=15))
    assert link_sweep() == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL for concurrent writers")
@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_merge_each_pair_once():
    """Concurrent runs of the job: every pair ends merged exactly once."""
    neuron = NeuronFactory()
    sessions = []
    for i in range(6):
        fp = DeviceFingerprintFactory(neuron=neuron)
        sessions += [
            visit(neuron, fingerprint=fp, ip=f"10.{i}.1.0"),
            visit(neuron, fingerprint=fp, ip=f"10.{i}.1.0", browser="Firefox"),
        ]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def sweep():
        try:
            barrier.wait()
            identity_link_sweep()
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert ProfileMerge.objects.count() == 6
    assert SessionBridge.objects.filter(status=BridgeStatus.MERGED).count() == 6
    for i in range(6):
        assert profile_of(sessions[2 * i]) == profile_of(sessions[2 * i + 1])


# --- consent withdrawal ---------------------------------------------------------------------------


def test_withdrawing_fingerprinting_consent_undoes_probabilistic_merges_and_keeps_deterministic_ones(neuron):
    """The device's fingerprints and fingerprint links go; its user-id merge stays."""
    fp = DeviceFingerprintFactory(neuron=neuron)
    laptop = visit(neuron, fingerprint=fp, ip="10.1.0.0")
    profile_identify(session=laptop, user_id="u-1")
    user = profile_find_for_user_id(neuron=neuron, user_id="u-1")
    other_browser_session = visit(neuron, fingerprint=fp, ip="10.1.0.0", browser="Firefox")
    phone = visit(neuron, ip="10.9.0.0", browser="Mobile Safari")
    profile_identify(session=phone, user_id="u-1")
    identity_link_sweep()
    assert profile_of(other_browser_session) == user

    removed = identity_forget_fingerprints(session=other_browser_session)
    assert removed == 1
    assert profile_of(other_browser_session) != user
    assert profile_of(phone) == user and profile_of(laptop) == user
    assert not SessionBridge.objects.filter(method__in=[BridgeMethod.FINGERPRINT, BridgeMethod.NETWORK]).exists()
    other_browser_session.refresh_from_db()
    assert other_browser_session.fingerprint is None
    # The laptop still consents and still holds the row: the hash is its fingerprint too.
    assert DeviceFingerprint.objects.filter(pk=fp.pk).exists()


def test_withdrawal_through_the_api_deletes_the_fingerprint_and_its_links(live_session, neuron):
    """PUT consent.fingerprinting=false: the session's fingerprint is deleted and its links removed."""
    client, body = live_session
    url = f"/api/sessions/{body['sessionId']}"
    session = UserSession.objects.get(public_id=body["sessionId"])
    assert client.put(url, {"consent": {"fingerprinting": True}}, format="json").status_code == 200
    assert client.put(url, {"fingerprint": {"hash": "abcdef0123456789"}}, format="json").status_code == 200
    twin = visit(neuron, fingerprint=DeviceFingerprint.objects.get(), ip="81.2.69.0", browser="Firefox")
    identity_link_sweep()
    assert profile_of(session) == profile_of(twin)

    response = client.put(url, {"consent": {"fingerprinting": False}}, format="json")
    assert response.status_code == 200
    session.refresh_from_db()
    assert session.fingerprint is None
    assert profile_of(session) != profile_of(twin)
    assert not SessionBridge.objects.exists()


def test_withdrawal_deletes_a_fingerprint_no_other_device_uses(neuron):
    """A fingerprint only this device carried is deleted outright."""
    fp = DeviceFingerprintFactory(neuron=neuron)
    session = visit(neuron, fingerprint=fp)
    identity_forget_fingerprints(session=session)
    assert not DeviceFingerprint.objects.exists()


def test_withdrawal_covers_the_devices_other_sessions(neuron):
    """Every session of the device (its anonymous id) loses its fingerprint and its consent to it."""
    fp = DeviceFingerprintFactory(neuron=neuron)
    earlier = visit(neuron, fingerprint=fp, anonymous_id="device-1", when=timezone.now() - timedelta(days=2))
    current = visit(neuron, fingerprint=fp, anonymous_id="device-1")
    identity_forget_fingerprints(session=current)
    earlier.refresh_from_db()
    assert earlier.fingerprint is None and earlier.consent["fingerprinting"] is False


def test_the_same_hash_at_two_unrelated_places_is_only_suggested(neuron):
    """Two quiet networks that never met: a popular configuration on two devices, w = 0.99 / places."""
    fp = DeviceFingerprintFactory(neuron=neuron)
    home_a = visit(neuron, fingerprint=fp, ip="10.1.0.0")
    home_b = visit(neuron, fingerprint=fp, ip="10.2.0.0")
    identity_link_sweep()
    bridge = SessionBridge.objects.get()
    assert bridge.status == BridgeStatus.SUGGESTED
    signal = bridge.evidence["signals"]["fingerprint"]
    assert signal["places"] == 2 and signal["samePlace"] is False and signal["weight"] == pytest.approx(0.495)
    assert profile_of(home_a) != profile_of(home_b)


def test_a_busy_network_is_not_a_place(neuron, settings):
    """A network with more devices than IDENTITY_PLACE_MAX_DEVICES (a carrier, an office) proves nothing."""
    settings.IDENTITY_PLACE_MAX_DEVICES = 3
    fp = DeviceFingerprintFactory(neuron=neuron)
    visit(neuron, fingerprint=fp, ip="100.64.0.0")
    visit(neuron, fingerprint=fp, ip="100.64.0.0", browser="Firefox")
    visit(neuron, fingerprint=fp, ip="10.1.0.0", browser="Opera")
    for _ in range(3):
        visit(neuron, ip="100.64.0.0", browser="Edge")
    identity_link_sweep()
    signals = [
        b.evidence["signals"]["fingerprint"]
        for b in SessionBridge.objects.all()
        if "fingerprint" in b.evidence["signals"]
    ]
    assert signals and {s["places"] for s in signals} == {1}
    assert not any(s["samePlace"] for s in signals)


def test_network_signal_only_inside_its_window(neuron):
    """Same network and browser 30 hours apart: no link; a long session overlapping a later one: a link."""
    now = timezone.now()
    visit(neuron, when=now - timedelta(hours=40))
    visit(neuron, when=now - timedelta(hours=9))
    assert identity_link_sweep().scored == 0
    long_one = visit(neuron, ip="10.8.0.0", when=now - timedelta(hours=20))
    UserSession.objects.filter(pk=long_one.pk).update(last_activity_at=now - timedelta(minutes=5))
    visit(neuron, ip="10.8.0.0", when=now - timedelta(minutes=30))
    assert identity_link_sweep().suggested == 1
    bridge = SessionBridge.objects.get()
    assert bridge.method == BridgeMethod.NETWORK and bridge.evidence["signals"]["network"]["gapHours"] == 0


def test_a_family_tablets_anonymous_session_is_suggested_never_merged(neuron):
    """A tablet visit with the hash of the user's desktop-mode session at one place: capped at a suggestion."""
    fp = DeviceFingerprintFactory(neuron=neuron)
    desktop_mode = visit(neuron, fingerprint=fp, ip="10.1.0.0", device_type="desktop")
    profile_identify(session=desktop_mode, user_id="mother")
    tablet = visit(neuron, fingerprint=fp, ip="10.1.0.0", device_type="tablet", anonymous_id="tablet")
    other_visit = visit(neuron, ip="10.1.0.0", device_type="tablet", anonymous_id="tablet")
    identity_link_sweep()
    user = profile_find_for_user_id(neuron=neuron, user_id="mother")
    assert profile_of(tablet) not in (None, user)
    assert profile_of(other_visit) is None  # the link's profile is the session's, not the device's
    bridge = SessionBridge.objects.get(method=BridgeMethod.FINGERPRINT)
    assert bridge.status == BridgeStatus.SUGGESTED and bridge.confidence <= 0.5
    assert bridge.evidence["signals"]["fingerprint"]["sharedDevice"] is True


def test_sessions_of_one_family_tablet_are_not_linked_to_each_other(neuron):
    """Two anonymous sessions of a tablet: nothing says who held either, so no link and no profile."""
    fp = DeviceFingerprintFactory(neuron=neuron)
    first = visit(neuron, fingerprint=fp, ip="10.1.0.0", device_type="tablet")
    second = visit(neuron, fingerprint=fp, ip="10.1.0.0", device_type="tablet", anonymous_id="cleared-cookies")
    assert identity_link_sweep().scored == 0
    assert profile_of(first) is None and profile_of(second) is None


def test_an_anonymous_id_two_users_signed_in_on_is_linked_session_by_session(neuron):
    """A shared desktop: its anonymous session is one visit, not the anonymous id, when linked."""
    fp = DeviceFingerprintFactory(neuron=neuron)
    alice = visit(neuron, fingerprint=fp, ip="10.1.0.0", anonymous_id="family-pc")
    bob = visit(neuron, fingerprint=fp, ip="10.1.0.0", anonymous_id="family-pc")
    guest = visit(neuron, fingerprint=fp, ip="10.1.0.0", anonymous_id="family-pc")
    other_guest = visit(neuron, fingerprint=fp, ip="10.1.0.0", anonymous_id="family-pc")
    profile_identify(session=alice, user_id="alice")
    profile_identify(session=bob, user_id="bob")
    identity_link_sweep()
    assert profile_of(guest) is None and profile_of(other_guest) is None
    assert not SessionBridge.objects.filter(status=BridgeStatus.MERGED, method=BridgeMethod.FINGERPRINT).exists()
