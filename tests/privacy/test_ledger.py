"""The consent ledger: append-only proof, withdrawal effects, GPC across linked profiles."""

from __future__ import annotations

import pytest
from django.utils import timezone

from analytics.models import SessionSequence
from privacy.ledger import consent_current, consent_record, consent_update, linked_profiles
from privacy.models import AppendOnlyError, AuditEntry, ConsentRecord
from sessions_app.enrichment import request_meta_from
from sessions_app.models import BehaviorEvent, BridgeMethod, BridgeStatus, DeviceFingerprint, SessionBridge, UserSession
from tests.conftest import IPHONE_UA
from tests.sessions_app.factories import BehaviorEventFactory, GlobalUserProfileFactory, UserSessionFactory

pytestmark = pytest.mark.django_db

META = {"REMOTE_ADDR": "81.2.69.142", "HTTP_USER_AGENT": IPHONE_UA}


def meta(**extra):
    return request_meta_from({**META, **extra})


def test_each_decision_is_a_ledger_row_with_its_proof():
    """Purpose, decision, policy version, notice hash, source, controllers, time, network and device are kept."""
    session = UserSessionFactory()
    consent_update(
        session=session,
        given={"analytics": True, "marketingConsent": False},
        source="banner",
        request_meta=meta(),
        policy_version="2026-03",
        text_hash="a" * 64,
    )
    rows = {r.purpose: r for r in ConsentRecord.objects.filter(session=session)}
    assert set(rows) == {"analytics", "marketing"}
    analytics = rows["analytics"]
    assert analytics.granted is True and rows["marketing"].granted is False
    assert analytics.policy_version == "2026-03" and analytics.text_hash == "a" * 64
    assert analytics.source == "banner"
    assert analytics.anonymous_id == session.anonymous_id
    assert analytics.ip_truncated == "81.2.69.0"
    assert analytics.user_agent == IPHONE_UA
    assert analytics.recorded_at <= timezone.now()
    assert list(analytics.controllers.all()) == [session.neuron]


def test_ledger_rows_cannot_be_changed():
    """History is appended, never rewritten."""
    session = UserSessionFactory()
    (record,) = consent_record(neuron=session.neuron, session=session, decisions={"analytics": True}, source="api")
    record.granted = False
    with pytest.raises(AppendOnlyError):
        record.save()
    with pytest.raises(AppendOnlyError):
        ConsentRecord.objects.filter(pk=record.pk).update(granted=False)


def test_current_consent_is_the_latest_record_per_purpose_and_the_snapshot_follows():
    """Grant then withdraw: the snapshot and the ledger's latest row agree."""
    session = UserSessionFactory(consent={})
    consent_update(session=session, given={"analytics": True, "personalization": True}, request_meta=meta())
    consent_update(session=session, given={"analytics": False}, request_meta=meta())
    session.refresh_from_db()
    assert session.consent["analytics"] is False and session.consent["personalization"] is True
    latest = consent_current(session=session)
    assert latest["analytics"]["granted"] is False and latest["personalization"]["granted"] is True
    assert ConsentRecord.objects.filter(session=session, purpose="analytics").count() == 2


def test_withdrawing_fingerprinting_removes_the_device_fingerprint_at_once():
    """No fingerprinting consent: the fingerprint row and the session's link to it are gone."""
    session = UserSessionFactory(consent={"analytics": True, "fingerprinting": True})
    fp = DeviceFingerprint.objects.create(
        neuron=session.neuron, fingerprint_hash="f" * 32, first_seen_at=timezone.now(), last_seen_at=timezone.now()
    )
    UserSession.objects.filter(pk=session.pk).update(fingerprint=fp)
    consent_update(session=session, given={"fingerprinting": False}, request_meta=meta())
    session.refresh_from_db()
    assert session.fingerprint_id is None
    assert not DeviceFingerprint.objects.filter(pk=fp.pk).exists()


def test_withdrawing_analytics_deletes_the_sessions_events_and_what_is_copied_from_them():
    """No analytics consent: the session's events, its packed sequence and its counters go at once;
    another session's events, and a withdrawal of another purpose, leave events alone."""
    session = UserSessionFactory(consent={"analytics": True, "marketing": True}, event_count=2, page_view_count=2)
    other = UserSessionFactory(neuron=session.neuron, consent={"analytics": True})
    for target in (session, session, other):
        BehaviorEventFactory(session=target, event_type="page_view")
    now = timezone.now()
    SessionSequence.objects.create(
        session=session,
        neuron=session.neuron,
        started_at=session.started_at,
        device_type=session.device_type,
        first_event_at=now,
        last_event_at=now,
        event_count=2,
        events=b"",
    )

    consent_update(session=session, given={"marketing": False}, request_meta=meta())
    assert BehaviorEvent.objects.filter(session=session).count() == 2

    consent_update(session=session, given={"analytics": False}, request_meta=meta())
    assert not BehaviorEvent.objects.filter(session=session).exists()
    assert not SessionSequence.objects.filter(session=session).exists()
    assert BehaviorEvent.objects.filter(session=other).count() == 1
    session.refresh_from_db()
    assert (session.event_count, session.page_view_count, session.engagement_score) == (0, 0, 0.0)

    consent_update(session=session, given={"analytics": True}, request_meta=meta())  # a new grant deletes nothing
    assert BehaviorEvent.objects.filter(session=other).count() == 1


def test_staff_consent_change_is_recorded_as_admin_and_audited(staff_user):
    """An operator's change names the operator in the ledger and the audit log."""
    session = UserSessionFactory()
    consent_update(session=session, given={"marketing": False}, request_meta=None, actor=staff_user)
    record = ConsentRecord.objects.get(session=session)
    assert record.source == "admin" and record.recorded_by == f"user:{staff_user.pk}:staff"
    entry = AuditEntry.objects.get(action="consent.change")
    assert entry.subject == f"session:{session.public_id}" and entry.actor == record.recorded_by


def test_visitor_consent_change_is_not_an_audited_privileged_action():
    """A visitor deciding for themselves is in the ledger, not the audit log."""
    consent_update(session=UserSessionFactory(), given={"analytics": True}, request_meta=meta())
    assert not AuditEntry.objects.exists()


def _linked_family():
    """A profile P with a merged profile M and a bridged profile B (and a rejected link to R)."""
    p = GlobalUserProfileFactory()
    m = GlobalUserProfileFactory(neuron=p.neuron, merged_into=p)
    b = GlobalUserProfileFactory(neuron=p.neuron)
    r = GlobalUserProfileFactory(neuron=p.neuron)
    SessionBridge.objects.create(
        neuron=p.neuron, from_profile=p, to_profile=b, method=BridgeMethod.FINGERPRINT, confidence=0.9
    )
    SessionBridge.objects.create(
        neuron=p.neuron,
        from_profile=r,
        to_profile=p,
        method=BridgeMethod.NETWORK,
        confidence=0.3,
        status=BridgeStatus.REJECTED,
    )
    return p, m, b, r


def test_linked_profiles_follow_merges_and_links_but_not_rejected_ones():
    """Merged and linked profiles are one family; a rejected link joins nobody."""
    p, m, b, r = _linked_family()
    assert linked_profiles(m) == {p.pk, m.pk, b.pk}


def test_gpc_opts_out_the_device_and_every_linked_profile_once():
    """Sec-GPC: 1 records a saleSharing opt-out for the session and each linked profile, and updates their devices."""
    p, m, b, r = _linked_family()
    session = UserSessionFactory(neuron=p.neuron, profile=p, consent={"saleSharing": True})
    other_device = UserSessionFactory(neuron=p.neuron, profile=b, consent={"saleSharing": True, "analytics": True})
    stranger = UserSessionFactory(neuron=p.neuron, profile=r, consent={"saleSharing": True})

    consent_update(session=session, given=None, request_meta=meta(HTTP_SEC_GPC="1"))

    gpc = ConsentRecord.objects.filter(source="gpc", purpose="saleSharing", granted=False)
    assert gpc.filter(session=session).count() == 1
    assert set(gpc.filter(session__isnull=True).values_list("profile_id", flat=True)) == {p.pk, m.pk, b.pk}
    other_device.refresh_from_db()
    stranger.refresh_from_db()
    assert other_device.consent["saleSharing"] is False and other_device.consent["analytics"] is True
    assert stranger.consent["saleSharing"] is True
    session.refresh_from_db()
    assert session.gpc is True and session.consent["saleSharing"] is False

    # A second GPC request records nothing new.
    before = ConsentRecord.objects.count()
    consent_update(session=session, given=None, request_meta=meta(HTTP_SEC_GPC="1"))
    assert ConsentRecord.objects.count() == before
