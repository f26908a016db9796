from __future__ import annotations

from django.contrib import admin

from analytics.models import DailyRollup, HourlyRollup, RollupPeriod, RollupWatermark


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
    list_display = ["granularity", "closed_through", "updated_at"]
    list_filter = ["granularity"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # rebuilt by the rollup jobs; a deleted row would silently drop counts
