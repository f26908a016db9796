"""One error path: every exception a view lets out becomes problem details."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import set_rollback

from config.api.errors import ApplicationError
from config.api.problems import PROBLEM_CONTENT_TYPE, problem_body

logger = logging.getLogger(__name__)


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error structure into {"field.path": [messages]}."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = "" if key == "non_field_errors" else str(key)
            path = f"{prefix}.{name}" if prefix and name else (prefix or name)
            for k, v in flatten_errors(value, path).items():
                out.setdefault(k, []).extend(v)
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            out.setdefault(prefix or "body", []).extend(str(item) for item in detail)
        else:
            for index, item in enumerate(detail):
                if not item:
                    continue
                path = f"{prefix}[{index}]" if prefix else f"[{index}]"
                for k, v in flatten_errors(item, path).items():
                    out.setdefault(k, []).extend(v)
    else:
        out.setdefault(prefix or "body", []).append(str(detail))
    return out


def _response(status: int, headers: dict[str, str] | None = None, **kwargs: Any) -> Response:
    response = Response(problem_body(status=status, **kwargs), status=status, content_type=PROBLEM_CONTENT_TYPE)
    for key, value in (headers or {}).items():
        response[key] = value
    return response


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    set_rollback()
    if isinstance(exc, ApplicationError):
        return _response(
            exc.status,
            headers=exc.headers,
            title=exc.title,
            detail=exc.detail,
            slug=exc.slug,
            errors=exc.errors,
            extra=exc.extra,
        )
    if isinstance(exc, RequestDataTooBig):
        return _response(413, title="Payload too large", detail="The request body is too large.")
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        exc = drf.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)

    if not isinstance(exc, drf.APIException):
        return None  # a real bug: let Django log it and answer 500 (handler500 renders a problem)

    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))

    if isinstance(exc, drf.ValidationError):
        return _response(
            400,
            title="Invalid request",
            detail="The request has invalid fields; see errors.",
            slug="validation-error",
            errors=flatten_errors(exc.detail),
        )
    if isinstance(exc, drf.ParseError):
        return _response(400, title="Malformed request body", detail=str(exc.detail), slug="malformed-body")
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        status = exc.status_code
        return _response(status, headers=headers, title="Authentication required", detail=str(exc.detail))
    if isinstance(exc, drf.Throttled):
        return _response(429, headers=headers, title="Too many requests", detail=str(exc.detail), slug="rate-limited")
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return _response(exc.status_code, headers=headers, detail=detail)
