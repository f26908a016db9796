"""Request bodies sent with `Transfer-Encoding: chunked`.

Django reads `CONTENT_LENGTH` bytes of a body and takes a request without that header as
having none, so a chunked body (no length) reached the views empty: a session was created
without the consent it carried, an event batch read as nothing. The servers (gunicorn,
uvicorn through a2wsgi) undo the chunking; this WSGI middleware reads such a body up to
Django's own cap (DATA_UPLOAD_MAX_MEMORY_SIZE) and hands it on with its length, so every
view's parsing and size limits apply as to any other body. Beyond the cap: a 413 problem.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import orjson
from django.conf import settings

from config.api.problems import PROBLEM_CONTENT_TYPE, problem_body


class ChunkedBodyMiddleware:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not environ.get("CONTENT_LENGTH"):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            body = environ["wsgi.input"].read(limit + 1)
            if len(body) > limit:
                status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
                document = orjson.dumps(problem_body(status=status, detail=f"The request body exceeds {limit} bytes."))
                start_response(
                    f"{status.value} {status.phrase}",
                    [("Content-Type", PROBLEM_CONTENT_TYPE), ("Content-Length", str(len(document)))],
                )
                return [document]
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)
