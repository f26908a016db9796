"""The published OpenAPI schema is what the API does: schemathesis generates requests for every
operation from the schema (valid ones and broken ones) and each answer must carry a documented
status code and content type, match the documented body schema, and never be a server error.

Requests carry a staff login (cookie and CSRF token), the site key (and as the write key of
the Segment-compatible /v1 calls), and for operations on one session (`{session_id}`) that
session's id and bearer token, so they reach the views' real work rather than stopping at
authentication.
"""

from __future__ import annotations

import base64

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from tests.conftest import IPHONE_UA

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
CSRF = "c" * 32


@pytest.fixture
def credentials(neuron, staff_user):
    """Headers for every request, and the one session `{session_id}` operations get."""
    browser = Client(HTTP_USER_AGENT=IPHONE_UA, REMOTE_ADDR="81.2.69.142")
    created = browser.post(
        "/api/sessions/create",
        {"consent": {"analytics": True, "personalization": True, "fingerprinting": True}},
        content_type="application/json",
        HTTP_X_SITE_KEY=neuron.publishable_key,
    ).json()
    staff = Client()
    staff.force_login(staff_user)
    cookies = {"sessionid": staff.cookies["sessionid"].value, "csrftoken": CSRF}
    headers = {"X-CSRFToken": CSRF, "X-Site-Key": neuron.publishable_key, "User-Agent": IPHONE_UA}
    # The requests go to the WSGI application itself, whose request signals would close the
    # database connection (and with it the test's transaction); Django's test client
    # disconnects them the same way around each of its requests.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield cookies, headers, created["sessionId"], created["token"]
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


# Loaded at collection: the schema view reads no database.
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_every_operation_answers_as_documented(case, credentials):
    cookies, headers, session_id, token = credentials
    headers = dict(headers)
    if case.path.startswith("/v1/"):
        headers["Authorization"] = "Basic " + base64.b64encode(f"{headers['X-Site-Key']}:".encode()).decode()
    if "session_id" in (case.path_parameters or {}):
        case.path_parameters["session_id"] = session_id
        headers["Authorization"] = f"Bearer {token}"
    response = case.call(headers=headers, cookies=cookies)
    case.validate_response(response, checks=CHECKS)
