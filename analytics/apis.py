"""Analytics API for operators: parse the query, call one selector, render.

All endpoints take `from`, `to` (a date = whole local days, `to` inclusive; or a
date-time on a whole hour, `to` exclusive), `tz` (IANA name), `neuronId`, and the
filters `deviceType`, `country`, `utmSource`. Unknown parameters are 400s.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import selectors
from config.api.datetimes import as_utc
from config.api.errors import NotFound
from config.api.permissions import StaffWithPermissions
from config.api.serializers import StrictSerializer
from sessions_app.models import DeviceType


@extend_schema_field({"type": "string", "example": "2026-11-01"})
class DateOrDateTimeField(serializers.Field):
    default_error_messages = {"invalid": "Use YYYY-MM-DD or an ISO 8601 date-time."}

    def to_internal_value(self, data: Any) -> date | datetime:
        if isinstance(data, str):
            try:
                parsed = parse_datetime(data) if "T" in data or " " in data else parse_date(data)
            except ValueError:
                parsed = None
            if isinstance(parsed, datetime) and parsed.tzinfo is not None:
                # An explicit offset: the instant, in UTC (a naive one is in the `tz` parameter's zone).
                try:
                    parsed = as_utc(parsed)
                except ValueError:
                    parsed = None
            if parsed is not None:
                return parsed
        self.fail("invalid")
        raise AssertionError  # unreachable: fail() raises

    def to_representation(self, value: Any) -> str:
        return value.isoformat()


class AnalyticsQuery(StrictSerializer):
    """Parameters every analytics endpoint takes."""

    to = DateOrDateTimeField(required=False, help_text="End: a date (inclusive) or a whole-hour date-time.")
    tz = serializers.CharField(required=False, default="UTC", max_length=64, help_text="IANA time zone.")
    neuronId = serializers.SlugField(required=False, max_length=64, help_text="Only this site.")
    deviceType = serializers.ChoiceField(choices=DeviceType.values, required=False)
    country = serializers.RegexField(
        r"^([A-Za-z]{2})?$", required=False, allow_blank=True, help_text="ISO country code; empty for unknown."
    )
    utmSource = serializers.CharField(required=False, allow_blank=True, max_length=200)

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        # `from` is a Python keyword, so it cannot be a class attribute.
        fields["from"] = DateOrDateTimeField(required=False, help_text="Start: a date or a whole-hour date-time.")
        return fields

    def scope(self) -> selectors.Scope:
        v = self.validated_data
        country = v.get("country")
        return selectors.scope_build(
            start=v.get("from"),
            end=v.get("to"),
            tz=v.get("tz") or "UTC",
            neuron_slug=v.get("neuronId"),
            device_type=v.get("deviceType"),
            country=country.upper() if country is not None else None,
            utm_source=v.get("utmSource"),
        )


class TrendsQuery(AnalyticsQuery):
    metric = serializers.ChoiceField(choices=selectors.TREND_METRICS, required=False, default="sessions")
    interval = serializers.ChoiceField(choices=["hour", "day"], required=False, default="day")


class FunnelQuery(AnalyticsQuery):
    step = serializers.ListField(
        child=serializers.CharField(max_length=1100),
        min_length=2,
        max_length=10,
        help_text="Repeat per step, in order: page:/path, event:type or event:type:name.",
    )
    window = serializers.IntegerField(
        required=False, default=86400, min_value=1, max_value=90 * 86400, help_text="Conversion window, seconds."
    )


class JourneysQuery(AnalyticsQuery):
    page = serializers.RegexField(r"^/", max_length=1024, help_text="The page path to start (or end) at.")
    direction = serializers.ChoiceField(choices=["next", "previous"], required=False, default="next")
    depth = serializers.IntegerField(required=False, default=3, min_value=1, max_value=6)
    limit = serializers.IntegerField(required=False, default=5, min_value=1, max_value=20)


class RetentionQuery(AnalyticsQuery):
    period = serializers.ChoiceField(choices=["day", "week"], required=False, default="day")
    periods = serializers.IntegerField(required=False, default=7, min_value=1, max_value=60)


class LimitQuery(AnalyticsQuery):
    limit = serializers.IntegerField(required=False, default=10, min_value=1, max_value=100)


def _trends(q: TrendsQuery) -> dict:
    v = q.validated_data
    return selectors.trends_series(scope=q.scope(), metric=v["metric"], interval=v["interval"])


def _funnel(q: FunnelQuery) -> dict:
    v = q.validated_data
    steps = selectors.funnel_steps_from_strings(v["step"])
    return selectors.funnel_report(scope=q.scope(), steps=steps, window=timedelta(seconds=v["window"]))


def _journeys(q: JourneysQuery) -> dict:
    v = q.validated_data
    return selectors.journeys_report(
        scope=q.scope(), page=v["page"], direction=v["direction"], depth=v["depth"], top=v["limit"]
    )


def _retention(q: RetentionQuery) -> dict:
    v = q.validated_data
    return selectors.retention_report(scope=q.scope(), period=v["period"], periods=v["periods"])


ANALYTICS_TYPES: dict[str, tuple[type[AnalyticsQuery], Any]] = {
    "trends": (TrendsQuery, _trends),
    "funnel": (FunnelQuery, _funnel),
    "journeys": (JourneysQuery, _journeys),
    "retention": (RetentionQuery, _retention),
    "engagement": (AnalyticsQuery, lambda q: selectors.engagement_report(scope=q.scope())),
    "pages": (LimitQuery, lambda q: selectors.pages_report(scope=q.scope(), limit=q.validated_data["limit"])),
    "referrers": (LimitQuery, lambda q: selectors.referrers_report(scope=q.scope(), limit=q.validated_data["limit"])),
    "events": (LimitQuery, lambda q: selectors.events_report(scope=q.scope(), limit=q.validated_data["limit"])),
}


class StaffAnalyticsApi(APIView):
    # The federation work adds neuron secret keys with an analytics scope here.
    authentication_classes = [SessionAuthentication]
    permission_classes = [StaffWithPermissions]
    # Reports read the sessions and their events: what the admin's session list needs.
    required_permissions = {"GET": ["sessions_app.view_usersession"]}
    query_class: type[AnalyticsQuery] = AnalyticsQuery

    def parse(self, request: Any, query_class: type[AnalyticsQuery] | None = None) -> AnalyticsQuery:
        query = (query_class or self.query_class)(data=request.query_params)
        query.is_valid(raise_exception=True)
        return query


_REPORT = OpenApiResponse(OpenApiTypes.OBJECT, description="The report (camelCase JSON).")
_PROBLEMS = {400: OpenApiResponse(description="Invalid parameters (problem details)."), 403: None, 401: None}


class MetricsApi(StaffAnalyticsApi):
    @extend_schema(
        parameters=[AnalyticsQuery],
        responses={200: _REPORT, **_PROBLEMS},
        summary="Headline metrics with the previous period",
        description=(
            "Active sessions now (activity in the last 5 minutes), sessions, visitors, page views, average "
            "session duration, bounce rate, pages per session, conversion rate, each with the previous period "
            "of the same length. `consented` covers sessions with analytics consent; `anonymous` the traffic "
            "counted without it (page views and events only; null when filtering by utmSource)."
        ),
    )
    def get(self, request):
        return Response(selectors.metrics_summary(scope=self.parse(request).scope()))


class AnalyticsTypeApi(StaffAnalyticsApi):
    @extend_schema(
        parameters=[
            AnalyticsQuery,
            OpenApiParameter("type", str, OpenApiParameter.PATH, enum=list(ANALYTICS_TYPES)),
            OpenApiParameter("metric", str, enum=list(selectors.TREND_METRICS), description="trends"),
            OpenApiParameter("interval", str, enum=["hour", "day"], description="trends"),
            OpenApiParameter("step", str, many=True, description="funnel: page:/path, event:type[:name]; 2-10"),
            OpenApiParameter("window", int, description="funnel: conversion window in seconds (default 86400)"),
            OpenApiParameter("page", str, description="journeys: the page path"),
            OpenApiParameter("direction", str, enum=["next", "previous"], description="journeys"),
            OpenApiParameter("depth", int, description="journeys: 1-6 steps"),
            OpenApiParameter("limit", int, description="journeys (per level), pages, referrers, events"),
            OpenApiParameter("period", str, enum=["day", "week"], description="retention: cohort period"),
            OpenApiParameter("periods", int, description="retention: later periods shown (1-60)"),
        ],
        responses={200: _REPORT, 404: OpenApiResponse(description="Unknown type; lists validTypes."), **_PROBLEMS},
        summary="Trends, funnel, journeys, retention, engagement, pages, referrers or events",
    )
    def get(self, request, **kwargs):
        kind = kwargs["type"]
        if kind not in ANALYTICS_TYPES:
            raise NotFound(f"Unknown analytics type {kind!r}.", extra={"validTypes": sorted(ANALYTICS_TYPES)})
        query_class, run = ANALYTICS_TYPES[kind]
        return Response(run(self.parse(request, query_class)))


class DevicesApi(StaffAnalyticsApi):
    @extend_schema(
        parameters=[AnalyticsQuery], responses={200: _REPORT, **_PROBLEMS}, summary="Device types, browsers, OS"
    )
    def get(self, request):
        return Response(selectors.devices_report(scope=self.parse(request).scope()))


class GeographicApi(StaffAnalyticsApi):
    @extend_schema(parameters=[AnalyticsQuery], responses={200: _REPORT, **_PROBLEMS}, summary="Sessions by country")
    def get(self, request):
        return Response(selectors.geographic_report(scope=self.parse(request).scope()))


class SegmentsApi(StaffAnalyticsApi):
    @extend_schema(
        parameters=[AnalyticsQuery],
        responses={200: _REPORT, **_PROBLEMS},
        summary="Built-in segments: new vs returning, device, country, consent state",
    )
    def get(self, request):
        return Response(selectors.segments_report(scope=self.parse(request).scope()))
