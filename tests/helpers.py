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
