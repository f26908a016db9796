"""Pre-aggregated analytics: hourly and daily rollups per neuron and dimension.

A rollup row holds additive counts for one period, one neuron, one dimension
value (a page, a browser, an event type, ...) and one combination of the three
filter attributes (device type, country, UTM source): all three ALL ("*"), or
one of them concrete ("all mobile traffic"). Every session has exactly one
device type, country and UTM source, so the ALL rows are exact sums. Queries
with two or three filters read raw rows (analytics.aggregation.dimension_supports).

Nothing here identifies a visitor: no session, no anonymous id, no address.
Distinct-visitor counts are never stored here, because they cannot be added up
across periods or filter values; they are counted from the sessions table.
"""

from __future__ import annotations

from django.db import models

from federation.models import Neuron

ALL = "*"


class Granularity(models.TextChoices):
    HOUR = "hour", "Hour"
    DAY = "day", "Day"


class RollupBase(models.Model):
    neuron = models.ForeignKey(Neuron, on_delete=models.CASCADE, related_name="+")
    # UTC start of the hour (hourly) or of the UTC day (daily).
    period_start = models.DateTimeField()
    device_type = models.CharField(max_length=16, default=ALL)
    country = models.CharField(max_length=2, default=ALL)
    utm_source = models.CharField(max_length=200, default=ALL)
    dimension = models.CharField(max_length=32)
    value = models.CharField(max_length=1024, blank=True, default="")

    # Session-attributed counts (a session belongs to the period it started in).
    sessions = models.PositiveIntegerField(default=0)
    new_sessions = models.PositiveIntegerField(default=0)
    bounces = models.PositiveIntegerField(default=0)
    converted_sessions = models.PositiveIntegerField(default=0)
    page_view_sum = models.PositiveBigIntegerField(default=0)
    duration_seconds = models.FloatField(default=0.0)
    engagement_sum = models.FloatField(default=0.0)
    # Event-attributed count (an event belongs to the period of its timestamp).
    events = models.PositiveBigIntegerField(default=0)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.period_start:%Y-%m-%d %H:%M} {self.dimension}={self.value!r}"


class HourlyRollup(RollupBase):
    class Meta:
        db_table = "analytics_rollup_hourly"
        constraints = [
            models.UniqueConstraint(
                fields=["neuron", "period_start", "dimension", "device_type", "country", "utm_source", "value"],
                name="uniq_rollup_hourly_key",
            ),
        ]
        indexes = [
            models.Index(
                fields=["dimension", "device_type", "country", "utm_source", "period_start"],
                name="rollup_hourly_lookup_idx",
            ),
        ]


class DailyRollup(RollupBase):
    class Meta:
        db_table = "analytics_rollup_daily"
        constraints = [
            models.UniqueConstraint(
                fields=["neuron", "period_start", "dimension", "device_type", "country", "utm_source", "value"],
                name="uniq_rollup_daily_key",
            ),
        ]
        indexes = [
            models.Index(
                fields=["dimension", "device_type", "country", "utm_source", "period_start"],
                name="rollup_daily_lookup_idx",
            ),
        ]


class RollupPeriod(models.Model):
    """One computed period: what it was computed from, so later changes are noticed.

    `source_sessions` and `source_events` are the raw row counts the period was
    built from; the reconcile job recounts them and rebuilds any period whose
    rows changed since (late events, erasures).
    """

    granularity = models.CharField(max_length=8, choices=Granularity.choices)
    period_start = models.DateTimeField()
    source_sessions = models.PositiveBigIntegerField(default=0)
    source_events = models.PositiveBigIntegerField(default=0)
    computed_at = models.DateTimeField()

    class Meta:
        db_table = "analytics_rollup_periods"
        constraints = [
            models.UniqueConstraint(fields=["granularity", "period_start"], name="uniq_rollup_period"),
        ]

    def __str__(self) -> str:
        return f"{self.granularity} {self.period_start:%Y-%m-%d %H:%M}"


class RollupWatermark(models.Model):
    """Every period of this granularity before `closed_through` is rolled up and final."""

    granularity = models.CharField(max_length=8, choices=Granularity.choices, unique=True)
    closed_through = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "analytics_rollup_watermarks"

    def __str__(self) -> str:
        return f"{self.granularity} closed through {self.closed_through:%Y-%m-%d %H:%M}"
