"""The full IP address is never stored or logged; encrypted identifiers survive key rotation."""

from __future__ import annotations

import base64
import logging
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from privacy.crypto import decrypt, encrypt
from privacy.models import AuditEntry, DataSubjectRequest
from sessions_app.models import GlobalUserProfile
from tests.conftest import DESKTOP_UA
from tests.privacy.test_dsar import search_everywhere
from tests.sessions_app.factories import GlobalUserProfileFactory

pytestmark = pytest.mark.django_db

# A distinctive address from a documentation range: nothing else in a test database contains it.
DISTINCTIVE_IP = "198.51.100.237"
DISTINCTIVE_IP6 = "2001:db8:7a3c:9e01:4b2f:11ff:fe42:8d3c"


@pytest.mark.parametrize("address", [DISTINCTIVE_IP, DISTINCTIVE_IP6])
def test_full_ip_address_reaches_no_table_and_no_log_line(neuron, caplog, address):
    """A whole visit from a distinctive address: every table of every app is searched for it."""
    caplog.set_level(logging.DEBUG)
    browser = APIClient(REMOTE_ADDR=address, HTTP_USER_AGENT=DESKTOP_UA, HTTP_X_SITE_KEY=neuron.publishable_key)
    body = browser.post(
        "/api/sessions/create",
        {"consent": {"analytics": True, "fingerprinting": True}, "fingerprint": {"hash": "ipprobe0000000001"}},
        format="json",
        HTTP_SEC_GPC="1",
    ).json()
    client = APIClient(REMOTE_ADDR=address, HTTP_USER_AGENT=DESKTOP_UA)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    sid = body["sessionId"]
    client.put(f"/api/sessions/{sid}", {"userId": "ip-probe-user", "traits": {"plan": "pro"}}, format="json")
    client.post(f"/api/sessions/{sid}/events", {"events": [{"eventType": "page_view"}] * 2}, format="json")
    client.post("/api/sessions/consent", {"consent": {"marketing": True}}, format="json")
    client.post(f"/api/sessions/{sid}/activity")
    # Forwarded-for from a trusted proxy must be minimised the same way.
    proxied = APIClient(
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR=address,
        HTTP_USER_AGENT=DESKTOP_UA,
        HTTP_X_SITE_KEY=neuron.publishable_key,
    )
    proxied.post("/api/sessions/create", {"consent": {"analytics": True}}, format="json")

    # The interface identifier of an IPv6 address is the device; only the /48 network may remain.
    needles = [address, "11ff:fe42:8d3c"] if ":" in address else [address]
    assert search_everywhere(needles) == {}
    assert not [r for r in caplog.records if address in r.getMessage()]


def test_key_rotation_round_trip(settings):
    """Encrypt under key A; rotate with [B, A]; values then decrypt with B alone."""
    key_a = base64.urlsafe_b64encode(b"a" * 32).decode()
    key_b = base64.urlsafe_b64encode(b"b" * 32).decode()
    settings.FIELD_ENCRYPTION_KEYS = [key_a]
    profiles = [GlobalUserProfileFactory(user_id_encrypted=encrypt(f"user-{i}")) for i in range(5)]
    blank = GlobalUserProfileFactory(user_id_encrypted="")
    request = DataSubjectRequest.objects.create(
        kind="export",
        subject_type="userId",
        subject_hash="h" * 64,
        subject_encrypted=encrypt("user-0"),
        requested_by="staff",
        created_at=profiles[0].created_at,
    )

    settings.FIELD_ENCRYPTION_KEYS = [key_b, key_a]
    out = StringIO()
    call_command("rotate_encryption_keys", "--batch-size", "2", stdout=out, stderr=StringIO())
    assert "sessions_app.GlobalUserProfile: 5 rotated, 0 undecryptable" in out.getvalue()
    assert "privacy.DataSubjectRequest: 1 rotated" in out.getvalue()

    settings.FIELD_ENCRYPTION_KEYS = [key_b]
    for i, profile in enumerate(profiles):
        profile.refresh_from_db()
        assert decrypt(profile.user_id_encrypted) == f"user-{i}"
    request.refresh_from_db()
    assert decrypt(request.subject_encrypted) == "user-0"
    assert GlobalUserProfile.objects.get(pk=blank.pk).user_id_encrypted == ""
    entry = AuditEntry.objects.get(action="keys.rotate")
    assert entry.details["models"]["sessions_app.GlobalUserProfile"] == {"rotated": 5, "failed": 0}


def test_rotation_reports_values_no_configured_key_opens(settings):
    """A value under a key that was dropped too early is reported, not destroyed."""
    settings.FIELD_ENCRYPTION_KEYS = [base64.urlsafe_b64encode(b"c" * 32).decode()]
    profile = GlobalUserProfileFactory(user_id_encrypted=encrypt("orphan"))
    token = profile.user_id_encrypted
    settings.FIELD_ENCRYPTION_KEYS = [base64.urlsafe_b64encode(b"d" * 32).decode()]
    with pytest.raises(CommandError, match="could not be decrypted"):
        call_command("rotate_encryption_keys", stdout=StringIO(), stderr=StringIO())
    profile.refresh_from_db()
    assert profile.user_id_encrypted == token
