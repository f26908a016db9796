"""config.wsgi: the WSGI application gunicorn serves, driven with a hand-made environ."""

from __future__ import annotations

import io
from wsgiref.util import setup_testing_defaults

import orjson
import pytest
from django.core import signals
from django.db import close_old_connections

from config.wsgi import application
from sessions_app.models import UserSession
from tests.federation.factories import NeuronFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """The handler's request signals close the database connection (close_old_connections),
    which holds the test's transaction: as Django's test client does, keep it open."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def _post(path: str, body: bytes, *, chunked: bool, **headers: str) -> tuple[str, dict[str, str], bytes]:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "CONTENT_TYPE": "application/json",
        "wsgi.input": io.BytesIO(body),
        **{f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()},
    }
    if chunked:  # what gunicorn hands on for a chunked body: the body, de-chunked, and no length
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    else:
        environ["CONTENT_LENGTH"] = str(len(body))
    setup_testing_defaults(environ)
    answer: dict[str, object] = {}

    def start_response(status, response_headers, exc_info=None):
        answer["status"], answer["headers"] = status, dict(response_headers)

    content = b"".join(application(environ, start_response))
    return answer["status"], answer["headers"], content


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_is_read_with_or_without_a_length(chunked):
    neuron = NeuronFactory()
    status, _, content = _post(
        "/api/sessions/create",
        orjson.dumps({"consent": {"analytics": True}}),
        chunked=chunked,
        x_site_key=neuron.publishable_key,
    )
    assert status.startswith("201"), content
    session = UserSession.objects.get(public_id=orjson.loads(content)["sessionId"])
    assert session.consent["analytics"] is True


def test_a_chunked_body_over_the_cap_is_a_413_problem_and_reaches_no_view(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    neuron = NeuronFactory()
    body = orjson.dumps({"consent": {"analytics": True}, "x": "y" * 2048})
    status, headers, content = _post("/api/sessions/create", body, chunked=True, x_site_key=neuron.publishable_key)
    assert status.startswith("413")
    assert headers["Content-Type"] == "application/problem+json" and orjson.loads(content)["status"] == 413
    assert not UserSession.objects.exists()
