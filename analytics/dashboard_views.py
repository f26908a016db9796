"""The operator dashboard (/dashboard/): Django pages for staff holding OPERATOR_PERMISSION (the
admin's permission to view sessions; superusers hold it); charts are drawn in the browser by
ECharts from JSON embedded with json_script, live numbers arrive over ws/dashboard/.

Every page only reads (its forms are GET forms; changes are made in the admin or through the API):
other methods than GET and HEAD are a 405."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from analytics import dashboard_selectors as selectors
from analytics.dashboard_forms import (
    FunnelForm,
    JourneyForm,
    OverviewForm,
    PrivacyForm,
    RangeForm,
    RetentionForm,
    SegmentsForm,
)
from privacy.consent import PURPOSES
from privacy.selectors import privacy_report_site

PAGE_SIZE = 50
# Every page (and the live socket) reads sessions, their events and the reports built on them.
OPERATOR_PERMISSION = "sessions_app.view_usersession"
RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30), "90d": timedelta(days=90)}


def operator_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Staff (others are sent to the admin login) holding OPERATOR_PERMISSION (others get a 403)."""
    return staff_member_required(permission_required(OPERATOR_PERMISSION, raise_exception=True)(view))


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


def _report_page(
    request: HttpRequest, template: str, section: str, form: RangeForm, report: Any, **context: Any
) -> HttpResponse:
    """A report page: its form (errors shown in place of the report), the range picker keeping the
    other parameters, and the report when the form is valid."""
    return _page(
        request,
        template,
        section,
        {
            "form": form,
            "report": report,
            "range_key": form.data.get("range"),
            "range_keep": form.kept_params("range", "tz"),
            **context,
        },
    )


@require_safe
@operator_required
def overview(request: HttpRequest) -> HttpResponse:
    form = OverviewForm(request.GET)
    report = None
    if form.is_valid():
        report = selectors.overview_report(scope=form.scope, interval=form.interval, metric=form.cleaned_data["metric"])
    return _report_page(
        request,
        "dashboard/overview.html",
        "overview",
        form,
        report,
        top_pages=selectors.top_pages_now(),
        tick_seconds=settings.DASHBOARD_TICK_SECONDS,
        metric_keep=form.kept_params("metric"),
    )


@require_safe
@operator_required
def funnels(request: HttpRequest) -> HttpResponse:
    form = FunnelForm(request.GET)
    report = suggestions = None
    if form.is_valid():
        suggestions = selectors.funnel_step_suggestions(scope=form.scope)
        if form.cleaned_data["step"]:
            report = selectors.funnel_page(
                scope=form.scope,
                steps=form.cleaned_data["step"],
                window=timedelta(seconds=form.cleaned_data["window"]),
            )
    return _report_page(
        request,
        "dashboard/funnels.html",
        "funnels",
        form,
        report,
        step_values=form.step_values(),
        suggestions=suggestions,
    )


@require_safe
@operator_required
def journeys(request: HttpRequest) -> HttpResponse:
    form = JourneyForm(request.GET)
    report = None
    if form.is_valid():
        v = form.cleaned_data
        report = selectors.journey_page(
            scope=form.scope, page=v["page"], direction=v["direction"], depth=v["depth"], limit=v["limit"]
        )
    return _report_page(request, "dashboard/journeys.html", "journeys", form, report)


@require_safe
@operator_required
def retention(request: HttpRequest) -> HttpResponse:
    form = RetentionForm(request.GET)
    report = None
    if form.is_valid():
        v = form.cleaned_data
        report = selectors.retention_page(scope=form.scope, period=v["period"], periods=v["periods"], now=form.now)
    return _report_page(request, "dashboard/retention.html", "retention", form, report)


@require_safe
@operator_required
def segments(request: HttpRequest) -> HttpResponse:
    form = SegmentsForm(request.GET)
    report = selectors.segments_page(scope=form.scope) if form.is_valid() else None
    return _report_page(request, "dashboard/segments.html", "segments", form, report)


@require_safe
@operator_required
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


@require_safe
@operator_required
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


@require_safe
@operator_required
def privacy_centre(request: HttpRequest) -> HttpResponse:
    form = PrivacyForm(request.GET)
    # Privacy's own report (what staff get from /api/sessions/privacy-report), over the chosen range.
    report = privacy_report_site(window=RANGES[form.cleaned_data["range"]]) if form.is_valid() else None
    context: dict[str, Any] = {}
    if report is not None:
        consent = report["consentRates"]
        context = {
            "consent": consent,
            # The consent chart's rows; with no session in the range every rate is 0 %.
            "consent_rows": [
                {"purpose": purpose, "granted": consent["granted"][purpose], "rate": rate or 0.0}
                for purpose, rate in consent["rates"].items()
            ],
            "requests": report["requests"],
            "retention": report["retention"],
            "audit": report["auditChain"],
        }
    return _report_page(request, "dashboard/privacy.html", "privacy", form, report, **context)
