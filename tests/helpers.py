"""Assertions and clients shared by the API test modules."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import pytest
from django.db import connection, connections
from rest_framework.test import APIClient

from tests.conftest import IPHONE_UA

# Concurrency tests run on PostgreSQL only: SQLite's in-memory test database is shared between
# threads through shared-cache table locks, which fail at once instead of waiting, and SQLite
# serialises writers anyway. The races these tests guard against are PostgreSQL's.
needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL: concurrent transactions"
)

T = TypeVar("T")


def in_parallel(calls: list[Callable[[], T]], *, timeout: float = 60) -> list[T]:
    """Run each call in its own thread, released together; their results in order. A call's
    exception fails the test; each thread closes its database connections when done."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = calls[i]()
        except BaseException as exc:  # surfaced below, with the thread's error
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not errors, errors
    return results


def bearer(token: str) -> APIClient:
    """A browser client that sends a session token."""
    client = APIClient(REMOTE_ADDR="81.2.69.142", HTTP_USER_AGENT=IPHONE_UA)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def assert_problem(response, status: int) -> dict:
    """An RFC 9457 problem-details response with `status`; returns its body."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= set(body)
    return body


def end_server_threads_connections() -> None:
    """PostgreSQL: end the connections a server's worker threads keep open (they outlive the
    test), so the test database can be dropped at the end of the run. The threads reconnect
    when next used (the connection health check sees the ended connection)."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


# The project's own apps: an operator fixture holds every model permission of these.
PROJECT_APPS = ("federation", "sessions_app", "privacy", "personalization", "analytics")


def grant(user, *perms: str):
    """Give `user` the model permissions named "app_label.codename" (each must exist); returns
    the user. The user object's permission cache is dropped, so it sees them at once."""
    from django.contrib.auth.models import Permission

    wanted = {tuple(perm.split(".", 1)) for perm in perms}
    found = [
        permission
        for permission in Permission.objects.filter(codename__in={codename for _, codename in wanted}).select_related(
            "content_type"
        )
        if (permission.content_type.app_label, permission.codename) in wanted
    ]
    assert len(found) == len(wanted), f"unknown permissions among {sorted(perms)}"
    user.user_permissions.add(*found)
    forget_permissions(user)
    return user


def project_permissions() -> list[str]:
    """Every model permission of the project's apps, as "app_label.codename"."""
    from django.contrib.auth.models import Permission

    rows = Permission.objects.filter(content_type__app_label__in=PROJECT_APPS).values_list(
        "content_type__app_label", "codename"
    )
    return sorted(f"{app_label}.{codename}" for app_label, codename in rows)


def grant_all(user):
    """An operator: every model permission of the project's apps (not a superuser)."""
    return grant(user, *project_permissions())


def forget_permissions(user) -> None:
    """Drop the permission caches ModelBackend keeps on a user object."""
    for cache_name in ("_perm_cache", "_user_perm_cache", "_group_perm_cache"):
        user.__dict__.pop(cache_name, None)
