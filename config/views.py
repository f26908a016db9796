"""Error pages for non-DRF views: problem details for the API, HTML elsewhere."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.views import csrf, defaults

from config.api.problems import problem_response

API_PREFIXES = ("/api/", "/v1/")


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIXES) or request.path in ("/api", "/v1")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return problem_response(status=404, detail="No such resource.")
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return problem_response(status=500, detail="An unexpected error occurred; it has been logged.")
    return defaults.server_error(request)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return problem_response(status=400, detail="Bad request.")
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return problem_response(status=403, detail="Forbidden.")
    return defaults.permission_denied(request, exception)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: a non-DRF view under the API prefixes that fails Django's CSRF check
    answers with a problem, not Django's HTML page."""
    if _is_api(request):
        return problem_response(status=403, title="CSRF check failed", detail=f"CSRF check failed: {reason}")
    return csrf.csrf_failure(request, reason)


def favicon(request: HttpRequest) -> HttpResponse:
    # Browsers ask for /favicon.ico on every page (admin included); answer instead of logging a 404.
    return HttpResponsePermanentRedirect(static("dashboard/favicon.svg"))
