"""Liveness and readiness probes (plain Django views: no auth, no DRF overhead)."""

from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from config.api.problems import problem_response

logger = logging.getLogger(__name__)


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """The process is alive and serving."""
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_cache() -> None:
    key = f"readyz:{uuid.uuid4().hex}"
    cache.set(key, "1", timeout=5)
    if cache.get(key) != "1":
        raise RuntimeError("cache did not return what was written")
    cache.delete(key)


def _check_redis() -> None:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    finally:
        client.close()


@require_GET
def readyz(request: HttpRequest) -> HttpResponse:
    """Ready to serve: database and cache reachable, and Redis when configured."""
    checks = {"database": _check_database, "cache": _check_cache}
    if settings.REDIS_URL:
        checks["redis"] = _check_redis
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # any failure means "not ready"; the reason goes to the log
            logger.warning("readiness check %s failed: %s", name, exc.__class__.__name__)
            results[name] = "unavailable"
    if all(value == "ok" for value in results.values()):
        return JsonResponse({"status": "ok", "checks": results})
    failed = ", ".join(name for name, value in results.items() if value != "ok")
    return problem_response(
        status=503,
        title="Not ready",
        detail=f"Unavailable: {failed}.",
        slug="not-ready",
        extra={"checks": results},
        headers={"Retry-After": "5"},
    )
