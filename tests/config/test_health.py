"""Liveness, readiness, OpenAPI schema and docs."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_healthz_answers_while_the_process_is_alive():
    response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_reports_each_dependency(settings):
    response = Client().get("/readyz")
    assert response.status_code == 200
    checks = response.json()["checks"]
    assert checks["database"] == "ok" and checks["cache"] == "ok"
    assert ("redis" in checks) == bool(settings.REDIS_URL)


def test_readyz_is_503_problem_when_the_cache_is_unreachable(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 503 and body["checks"]["cache"] == "unavailable"
    assert response["Retry-After"]


def test_readyz_is_503_when_redis_is_down(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"] == "unavailable"


def test_readyz_is_503_when_the_database_fails(monkeypatch):
    from config import health

    def broken():
        raise RuntimeError("connection refused")

    monkeypatch.setattr(health, "_check_database", broken)
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "unavailable"


def test_health_endpoints_reject_other_methods():
    assert Client().post("/healthz").status_code == 405


def test_openapi_schema_and_docs_are_served():
    schema = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    spec = schema.json()
    assert "/api/sessions/create" in spec["paths"]
    assert "/api/sessions/{session_id}" in spec["paths"]
    assert {"siteKey", "sessionToken"} <= set(spec["components"]["securitySchemes"])
    docs = Client().get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


def test_admin_login_page_is_served():
    assert Client().get("/admin/login/").status_code == 200
