"""The operator dashboard (/dashboard/): staff-only Django pages; charts are drawn in the
browser by ECharts from JSON embedded with json_script, live numbers arrive over ws/dashboard/."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from analytics import dashboard_selectors as selectors
from privacy.consent import PURPOSES

PAGE_SIZE = 50
RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30), "90d": timedelta(days=90)}


def _range(request: HttpRequest, default: str = "7d") -> tuple[str, timedelta]:
    key = request.GET.get("range", default)
    if key not in RANGES:
        key = default
    return key, RANGES[key]


def _int_or_none(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 0 else None


def _page(request: HttpRequest, template: str, section: str, context: dict[str, Any]) -> HttpResponse:
    return render(request, template, {"section": section, "ranges": list(RANGES), **context})


@staff_member_required
def overview(request: HttpRequest) -> HttpResponse:
    range_key, _ = _range(request)
    return _page(
        request,
        "dashboard/overview.html",
        "overview",
        {
            "range_key": range_key,
            "top_pages": selectors.top_pages_now(),
            "tick_seconds": settings.DASHBOARD_TICK_SECONDS,
        },
    )


@staff_member_required
def sessions_explorer(request: HttpRequest) -> HttpResponse:
    filters = request.GET.copy()
    after = _int_or_none(filters.pop("after", [None])[-1])
    before = _int_or_none(filters.pop("before", [None])[-1])
    filterset = selectors.explorer_filterset(filters)
    page = None
    if filterset.is_valid():
        page = selectors.keyset_page(queryset=filterset.qs, after=after, before=before, size=PAGE_SIZE)
    query = filters.urlencode()
    return _page(
        request,
        "dashboard/sessions.html",
        "sessions",
        {"filterset": filterset, "page": page, "query": query, "export_query": query, "now": timezone.now()},
    )


@staff_member_required
def session_page(request: HttpRequest, public_id: Any) -> HttpResponse:
    detail = selectors.session_detail(public_id=public_id)
    if detail is None:
        raise Http404("No such session")
    timeline = [
        {
            "t": event.timestamp.isoformat(),
            "type": event.event_type,
            "label": event.event_name or event.page_path or event.event_type,
        }
        for event in detail.events
    ]
    return _page(
        request,
        "dashboard/session.html",
        "sessions",
        {
            "detail": detail,
            "s": detail.session,
            "timeline": timeline,
            "consent_items": [(p, bool((detail.session.consent or {}).get(p))) for p in PURPOSES],
        },
    )


@staff_member_required
def privacy_centre(request: HttpRequest) -> HttpResponse:
    range_key, span = _range(request, "30d")
    return _page(
        request,
        "dashboard/privacy.html",
        "privacy",
        {"range_key": range_key, "consent": selectors.consent_rates(since=timezone.now() - span)},
    )
