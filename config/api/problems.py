"""RFC 9457 problem-details documents."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
from django.http import HttpResponse

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://errors.session-engine.dev/"


def problem_body(
    *,
    status: int,
    title: str | None = None,
    detail: str | None = None,
    slug: str | None = None,
    errors: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    phrase = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + (slug or phrase.lower().replace(" ", "-")),
        "title": title or phrase,
        "status": status,
        "detail": detail or title or phrase,
    }
    if errors:
        body["errors"] = errors
    if extra:
        body.update(extra)
    return body


def problem_response(*, status: int, headers: dict[str, str] | None = None, **kwargs: Any) -> HttpResponse:
    """A problem response for plain Django views (outside DRF)."""
    response = HttpResponse(
        orjson.dumps(problem_body(status=status, **kwargs)),
        status=status,
        content_type=PROBLEM_CONTENT_TYPE,
    )
    for key, value in (headers or {}).items():
        response[key] = value
    return response
