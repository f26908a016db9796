"""The application's error hierarchy.

Services raise these; the DRF exception handler renders each as an RFC 9457
problem-details document. Views never build error responses by hand.
"""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    status = 400
    title = "Bad request"
    slug = "bad-request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.detail = detail or self.title
        self.errors = errors or {}
        self.headers = headers or {}
        self.extra = extra or {}
        super().__init__(self.detail)


class ValidationFailed(ApplicationError):
    status = 400
    title = "Invalid request"
    slug = "validation-error"


class Unauthorized(ApplicationError):
    status = 401
    title = "Authentication required"
    slug = "unauthorized"


class Forbidden(ApplicationError):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFound(ApplicationError):
    status = 404
    title = "Not found"
    slug = "not-found"


class MethodNotAllowed(ApplicationError):
    status = 405
    title = "Method not allowed"
    slug = "method-not-allowed"


class Conflict(ApplicationError):
    status = 409
    title = "Conflict"
    slug = "conflict"


class PayloadTooLarge(ApplicationError):
    status = 413
    title = "Payload too large"
    slug = "payload-too-large"


class UnsupportedMediaType(ApplicationError):
    status = 415
    title = "Unsupported media type"
    slug = "unsupported-media-type"


class Unprocessable(ApplicationError):
    status = 422
    title = "Unprocessable request"
    slug = "unprocessable"


class ServiceUnavailable(ApplicationError):
    status = 503
    title = "Service unavailable"
    slug = "service-unavailable"
