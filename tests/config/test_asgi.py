"""config.asgi: HTTP through Django's WSGI handler on a thread pool (a2wsgi), websockets through Channels."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from config.asgi import application
from sessions_app.models import UserSession
from tests.federation.factories import NeuronFactory
from tests.helpers import end_server_threads_connections

# The pool's threads have their own connections: they see committed rows only.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _end_pool_connections():
    yield
    end_server_threads_connections()


async def _call(method: str, path: str, **kwargs) -> httpx.Response:
    transport = httpx.ASGITransport(app=application, client=("81.2.69.142", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.request(method, path, **kwargs)


def test_health_over_asgi():
    response = asyncio.run(_call("GET", "/healthz"))
    assert response.status_code == 200


def test_session_creation_over_asgi_sees_the_client_address_and_stores_the_session():
    neuron = NeuronFactory()
    response = asyncio.run(
        _call(
            "POST",
            "/api/sessions/create",
            json={"consent": {"analytics": True}},
            headers={"X-Site-Key": neuron.publishable_key, "User-Agent": "Mozilla/5.0 (iPhone) Mobile Safari"},
        )
    )
    assert response.status_code == 201, response.text
    session = UserSession.objects.get(public_id=response.json()["sessionId"])
    assert session.ip_truncated == "81.2.69.0" and session.device_type == "mobile"


def test_problem_details_over_asgi():
    response = asyncio.run(_call("POST", "/api/sessions/create", content=b'{"consent": ', headers={"X-Site-Key": "x"}))
    assert response.status_code in (400, 401)
    assert response.headers["content-type"] == "application/problem+json"


async def _chunks(*parts: bytes):
    for part in parts:
        yield part


def test_a_chunked_body_is_read_as_any_other():
    """No Content-Length, Transfer-Encoding: chunked: the body and its consent reach the view."""
    neuron = NeuronFactory()
    response = asyncio.run(
        _call(
            "POST",
            "/api/sessions/create",
            content=_chunks(b'{"consent": ', b'{"analytics": true}}'),
            headers={"X-Site-Key": neuron.publishable_key, "Content-Type": "application/json"},
        )
    )
    assert response.status_code == 201, response.text
    assert response.json()["consent"]["analytics"] is True
    assert UserSession.objects.get(public_id=response.json()["sessionId"]).consent["analytics"] is True


def test_a_chunked_body_over_the_cap_is_a_413_problem(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    neuron = NeuronFactory()
    response = asyncio.run(
        _call(
            "POST",
            "/api/sessions/create",
            content=_chunks(b'{"consent": {"analytics": true}, "x": "', b"y" * 2048, b'"}'),
            headers={"X-Site-Key": neuron.publishable_key, "Content-Type": "application/json"},
        )
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert not UserSession.objects.exists()
