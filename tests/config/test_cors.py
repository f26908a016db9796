"""CORS: the browser-facing API answers other origins; staff endpoints stay same-origin."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

SHOP = "https://shop.example"


def preflight(client, path: str, *, origin: str = SHOP, headers: str = "content-type,x-site-key"):
    return client.options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS=headers,
    )


def test_preflight_for_session_create_allows_the_site_key_header(client):
    response = preflight(client, "/api/sessions/create")
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"
    allowed = {h.strip() for h in response["Access-Control-Allow-Headers"].split(",")}
    assert {"x-site-key", "authorization", "content-type"} <= allowed
    assert "Access-Control-Allow-Credentials" not in response


def test_cross_origin_create_and_events_carry_the_header(site_client):
    created = site_client.post(
        "/api/sessions/create", {"consent": {"analytics": True}}, format="json", HTTP_ORIGIN=SHOP
    )
    assert created.status_code == 201
    assert created["Access-Control-Allow-Origin"] == "*"
    body = created.json()
    events = site_client.post(
        f"/api/sessions/{body['sessionId']}/events",
        {"eventType": "page_view", "page": {"path": "/"}},
        format="json",
        HTTP_ORIGIN=SHOP,
        HTTP_AUTHORIZATION=f"Bearer {body['token']}",
    )
    assert events.status_code in (200, 201, 202), events.content
    assert events["Access-Control-Allow-Origin"] == "*"


def test_errors_are_readable_cross_origin(client):
    """A browser must be able to read a problem body (e.g. 401 for a missing site key)."""
    response = client.post("/api/sessions/create", {}, content_type="application/json", HTTP_ORIGIN=SHOP)
    assert response.status_code == 401
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "Retry-After" in response["Access-Control-Expose-Headers"]


@pytest.mark.parametrize(
    "path",
    ["/v1/track", "/api/sessions/consent", f"/api/personalization/{'0' * 8}-0000-0000-0000-{'0' * 12}/content"],
)
def test_other_browser_facing_paths_answer_preflight(client, path):
    response = preflight(client, path, headers="content-type,authorization")
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize(
    "path",
    ["/api/sessions/admin/sessions", "/api/sessions/metrics", "/api/personalization/segments", "/admin/"],
)
def test_staff_endpoints_stay_same_origin(client, path):
    response = preflight(client, path)
    assert "Access-Control-Allow-Origin" not in response


def test_allowed_origins_narrow_the_list(client, settings):
    settings.CORS_ALLOW_ALL_ORIGINS = False
    settings.CORS_ALLOWED_ORIGINS = [SHOP]
    assert preflight(client, "/api/sessions/create")["Access-Control-Allow-Origin"] == SHOP
    assert "Access-Control-Allow-Origin" not in preflight(client, "/api/sessions/create", origin="https://evil.example")
