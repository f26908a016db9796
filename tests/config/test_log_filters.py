"""Log lines never carry the subject of a data-subject request."""

from __future__ import annotations

import io
import logging

import pytest
from django.test import Client


@pytest.fixture
def console():
    """What the project's console handler writes during the test."""
    handler = next(h for h in logging.getLogger("django").handlers if isinstance(h, logging.StreamHandler))
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


@pytest.mark.django_db
def test_a_request_for_an_unknown_subject_is_logged_without_it(console):
    response = Client().get("/api/sessions/user-data/bob.smith@example.com/export")
    assert response.status_code in (401, 403, 404)
    Client().get("/api/sessions/user-data/bob.smith@example.com/nothing-here")  # a 404: Django logs its path
    logged = console.getvalue()
    assert "/api/sessions/user-data/…/nothing-here" in logged
    assert "bob.smith" not in logged


def test_request_status_paths_are_kept():
    from config.log_filters import RedactSubjectIds

    record = logging.LogRecord(
        "django.request", logging.WARNING, "", 0, "Not Found: %s", ("/api/sessions/user-data/requests/abc",), None
    )
    RedactSubjectIds().filter(record)
    assert record.getMessage() == "Not Found: /api/sessions/user-data/requests/abc"
