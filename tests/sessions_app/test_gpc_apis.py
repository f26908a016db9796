"""Global Privacy Control sent in the body by the browser session manager (`gpc`)."""

from __future__ import annotations

import pytest

from sessions_app.models import UserSession

pytestmark = pytest.mark.django_db

CREATE = "/api/sessions/create"


def test_create_with_body_gpc_opts_out_of_sale_sharing_and_marketing(site_client, settings):
    """`gpc: true` counts like Sec-GPC: 1, even in opt-out mode and against explicit grants."""
    settings.CONSENT_MODE = "opt-out"
    body = site_client.post(
        CREATE, {"gpc": True, "consent": {"saleSharing": True, "marketing": True}}, format="json"
    ).json()
    assert body["consent"]["saleSharing"] is False and body["consent"]["marketing"] is False
    assert body["consent"]["analytics"] is True
    assert UserSession.objects.get(public_id=body["sessionId"]).gpc is True


def test_body_gpc_false_does_not_undo_the_header(site_client):
    """A body can only opt out: `gpc: false` with Sec-GPC: 1 still records the opt-out."""
    body = site_client.post(
        CREATE, {"gpc": False, "consent": {"saleSharing": True}}, format="json", HTTP_SEC_GPC="1"
    ).json()
    assert body["consent"]["saleSharing"] is False
    assert UserSession.objects.get(public_id=body["sessionId"]).gpc is True


def test_create_without_gpc_keeps_the_choice(site_client, settings):
    """Without GPC an explicit sale/sharing grant stands."""
    body = site_client.post(CREATE, {"gpc": False, "consent": {"saleSharing": True}}, format="json").json()
    assert body["consent"]["saleSharing"] is True
    assert UserSession.objects.get(public_id=body["sessionId"]).gpc is False


def test_put_with_body_gpc_overrides_a_later_grant(live_session):
    """A consent update carrying `gpc: true` cannot grant sale/sharing."""
    client, body = live_session
    response = client.put(
        f"/api/sessions/{body['sessionId']}", {"gpc": True, "consent": {"saleSharing": True}}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["consent"]["saleSharing"] is False
    assert UserSession.objects.get(public_id=body["sessionId"]).gpc is True


@pytest.mark.parametrize("value", ["1", 1, None, "true"])
def test_gpc_must_be_a_boolean(site_client, live_session, value):
    """Anything but true/false is a 400 naming `gpc`, on create and on update."""
    response = site_client.post(CREATE, {"gpc": value}, format="json")
    assert response.status_code == 400 and "gpc" in response.json()["errors"]
    client, body = live_session
    response = client.put(f"/api/sessions/{body['sessionId']}", {"gpc": value}, format="json")
    assert response.status_code == 400 and "gpc" in response.json()["errors"]


def test_gpc_without_session_token_is_401(api_client, live_session):
    """The update route still needs the session's token."""
    _, body = live_session
    response = api_client.put(f"/api/sessions/{body['sessionId']}", {"gpc": True}, format="json")
    assert response.status_code == 401
