"""The PostgreSQL backend's health check: no round trip for an idle, open connection; a
connection the server hung up is replaced before the request's first query."""

from __future__ import annotations

import select
import time

import pytest
from django.db import connection, connections
from django.db.backends.postgresql import base as django_postgresql

from tests.helpers import needs_postgres

pytestmark = [needs_postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def other():
    """A second connection to the same database, as another process would have."""
    wrapper = connections.create_connection("default")
    wrapper.ensure_connection()
    yield wrapper.connection
    wrapper.close()


@pytest.fixture
def asked(monkeypatch):
    """Each time the check falls back to Django's `SELECT 1`."""
    calls = []
    real = django_postgresql.DatabaseWrapper.is_usable

    def spy(self):
        calls.append(1)
        return real(self)

    monkeypatch.setattr(django_postgresql.DatabaseWrapper, "is_usable", spy)
    return calls


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def wait_readable(timeout: float = 5.0) -> None:
    poller = select.poll()
    poller.register(connection.connection.fileno(), select.POLLIN)
    assert poller.poll(timeout * 1000), "the server never wrote to the connection"


def request_starts() -> None:
    """What Django does at the start of a request and before its first query."""
    connection.close_if_unusable_or_obsolete()
    connection.close_if_health_check_failed()


def test_backend_is_ours_and_checks_health():
    assert connection.settings_dict["ENGINE"] == "config.postgresql"
    assert connection.health_check_enabled


def test_an_idle_open_connection_is_usable_without_a_round_trip(asked):
    pid = backend_pid()
    for _ in range(3):
        request_starts()
        assert backend_pid() == pid  # the same connection, kept
    assert asked == []


def test_a_connection_the_server_ended_is_replaced_before_the_first_query(other, asked):
    pid = backend_pid()
    other.execute("SELECT pg_terminate_backend(%s)", [pid])
    wait_readable()
    request_starts()
    assert connection.connection is None  # closed by the check, not by a failed query
    assert backend_pid() != pid
    assert asked == [1]  # the hang-up was seen, then confirmed


def test_a_notification_waiting_on_the_connection_is_checked_and_kept(other, asked):
    pid = backend_pid()
    with connection.cursor() as cursor:
        cursor.execute("LISTEN backend_check")
    other.execute("NOTIFY backend_check")
    wait_readable()
    request_starts()
    assert asked == [1]  # something to read: asked the server, which answered
    assert backend_pid() == pid
    with connection.cursor() as cursor:
        cursor.execute("UNLISTEN backend_check")


def test_a_closed_connection_is_not_usable():
    backend_pid()
    connection.connection.close()
    assert connection.is_usable() is False
    started = time.monotonic()
    request_starts()
    assert backend_pid() > 0
    assert time.monotonic() - started < 5
