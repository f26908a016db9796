"""Visitors of the data-subject request tests: sessions made through the API as a browser would."""

from __future__ import annotations

from rest_framework.test import APIClient

from sessions_app.models import BehaviorEvent, UserSession
from tests.conftest import IPHONE_UA
from tests.helpers import bearer


def site_client(neuron) -> APIClient:
    return APIClient(REMOTE_ADDR="81.2.69.142", HTTP_USER_AGENT=IPHONE_UA, HTTP_X_SITE_KEY=neuron.publishable_key)


class Visit:
    """A session created on a site with a chosen anonymous id (and user id), with a few page views
    (paths `/<site slug>/<anonymous id>/<n>`, so a document shows whose they are)."""

    def __init__(self, neuron, anonymous_id: str, events: int = 2, user_id: str | None = None):
        self.neuron = neuron
        self.anonymous_id = anonymous_id
        body = (
            site_client(neuron)
            .post("/api/sessions/create", {"consent": {"analytics": True}, "anonymousId": anonymous_id}, format="json")
            .json()
        )
        assert body["anonymousId"] == anonymous_id, body
        self.session_id = body["sessionId"]
        self.token = body["token"]
        if user_id:
            response = self.client().put(f"/api/sessions/{self.session_id}", {"userId": user_id}, format="json")
            assert response.status_code == 200, response.content
            self.token = response.json().get("token", self.token)
        for e in range(events):
            response = self.client().post(
                f"/api/sessions/{self.session_id}/events",
                {"eventType": "page_view", "page": {"path": f"/{neuron.slug}/{anonymous_id}/{e}"}},
                format="json",
            )
            assert response.status_code in (200, 201, 202), response.content

    def client(self) -> APIClient:
        return bearer(self.token)

    def row(self) -> UserSession:
        return UserSession.objects.get(public_id=self.session_id)

    def exists(self) -> bool:
        return UserSession.objects.filter(public_id=self.session_id).exists()

    def events(self) -> int:
        return BehaviorEvent.objects.filter(session__public_id=self.session_id).count()


def run(capture, fn):
    """`fn()` with on-commit callbacks (the request's Celery task, eager) run."""
    with capture(execute=True):
        return fn()


def export_document(client: APIClient, response) -> dict:
    """The export document a request's answer leads to (completed)."""
    assert response.status_code in (200, 202), response.content
    body = response.json()
    if "statusUrl" not in body:
        return body
    detail = client.get(body["statusUrl"])
    assert detail.status_code == 200, detail.content
    assert detail.json()["status"] == "completed"
    return detail.json()["document"]
