from __future__ import annotations

from django.contrib import admin

from analytics.models import (
    Action,
    DailyRollup,
    HourlyRollup,
    RollupPeriod,
    RollupWatermark,
    SequenceDay,
    SessionSequence,
    Visitor,
    VisitorRollup,
)


class JobOutputAdmin(admin.ModelAdmin):
    """Tables the rollup jobs build and rebuild (sequences, their vocabulary, visitors): read-only."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # erasure and retention remove these with the sessions they derive from


@admin.register(SessionSequence)
class SessionSequenceAdmin(JobOutputAdmin):
    list_display = ["session", "neuron", "started_at", "device_type", "country", "event_count", "last_event_at"]
    list_filter = ["neuron", "device_type", "started_at"]
    search_fields = ["=session__public_id", "=anonymous_id"]
    date_hierarchy = "started_at"
    list_select_related = ["session", "neuron"]
    exclude = ["events"]  # packed binary; the session's events are on its own page
    raw_id_fields = ["session", "visitor"]


@admin.register(SequenceDay)
class SequenceDayAdmin(JobOutputAdmin):
    list_display = ["day", "neuron", "session_count", "stale", "first_event_at", "last_event_at"]
    list_filter = ["neuron", "stale", "day"]
    date_hierarchy = "day"
    list_select_related = ["neuron"]
    exclude = ["headers", "events"]  # packed binary copies of the day's sequences


@admin.register(Visitor)
class VisitorAdmin(JobOutputAdmin):
    list_display = ["pk", "neuron", "anonymous_id", "last_seen_at"]
    list_filter = ["neuron", "last_seen_at"]
    search_fields = ["=anonymous_id"]
    date_hierarchy = "last_seen_at"
    list_select_related = ["neuron"]


@admin.register(VisitorRollup)
class VisitorRollupAdmin(JobOutputAdmin):
    list_display = ["period_start", "neuron", "device_type", "country", "utm_source", "visitors"]
    list_filter = ["neuron", "device_type"]
    date_hierarchy = "period_start"
    list_select_related = ["neuron"]
    exclude = ["ids"]  # packed binary Visitor ids


@admin.register(Action)
class ActionAdmin(JobOutputAdmin):
    list_display = ["event_type", "event_name", "page_path"]
    list_filter = ["event_type"]
    search_fields = ["event_name", "page_path"]


class RollupAdmin(admin.ModelAdmin):
    """Rollups are written only by the rollup jobs: read-only here."""

    list_display = [
        "period_start",
        "neuron",
        "dimension",
        "value",
        "device_type",
        "country",
        "utm_source",
        "sessions",
        "events",
    ]
    list_filter = ["dimension", "neuron", "device_type"]
    search_fields = ["value"]
    date_hierarchy = "period_start"
    list_select_related = ["neuron"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # rebuilt by the rollup jobs; a deleted row would silently drop counts


admin.site.register(HourlyRollup, RollupAdmin)
admin.site.register(DailyRollup, RollupAdmin)


@admin.register(RollupPeriod)
class RollupPeriodAdmin(admin.ModelAdmin):
    list_display = ["granularity", "period_start", "source_sessions", "source_events", "computed_at"]
    list_filter = ["granularity", "computed_at"]
    date_hierarchy = "period_start"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # rebuilt by the rollup jobs; a deleted row would silently drop counts


@admin.register(RollupWatermark)
class RollupWatermarkAdmin(admin.ModelAdmin):
    list_display = ["granularity", "closed_through", "generation", "updated_at"]
    list_filter = ["granularity"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # rebuilt by the rollup jobs; a deleted row would silently drop counts
