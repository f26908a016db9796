"""Pre-aggregated analytics: hourly and daily rollups per neuron and dimension.

A rollup row holds additive counts for one period, one neuron, one dimension
value (a page, a browser, an event type, ...) and one combination of the three
filter attributes (device type, country, UTM source): all three ALL ("*"), or
one of them concrete ("all mobile traffic"). Every session has exactly one
device type, country and UTM source, so the ALL rows are exact sums. Queries
with two or three filters read raw rows (analytics.aggregation.dimension_supports).

Nothing here identifies a visitor: no session, no anonymous id, no address.
Distinct-visitor counts cannot be added up across periods or filter values, so
the rollups do not hold them: VisitorRollup keeps each hour's distinct visitors
as a set of integer ids, and a range's visitors are the size of the union of
its hours' sets (and of the raw sessions of the open period).
"""

from __future__ import annotations

from django.db import models

from federation.models import Neuron
from sessions_app.models import UserSession

ALL = "*"


class Granularity(models.TextChoices):
    HOUR = "hour", "Hour"
    DAY = "day", "Day"
    # Session sequences (SessionSequence) of sessions that started before the watermark.
    SESSION = "session", "Session sequences"
    # Visitor sets (VisitorRollup) of the hours before the watermark.
    VISITORS = "visitors", "Visitor sets"
    # Every UTC day before the watermark that has sequences has a SequenceDay row.
    SEQUENCE_DAYS = "seq_days", "Sequence days"


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


class VisitorRollup(models.Model):
    """The distinct visitors who started a consented session in one UTC hour: their integer
    Visitor ids, sorted, packed as little-endian int64 (`ids`), and how many (`visitors`).

    Kept per neuron for the same filter combinations as the rollups (all ALL, or one of
    device type, country and UTM source concrete). A range's visitors are the size of the
    union of its hours' sets, so a returning visitor counts once. Built for closed hours
    (watermark Granularity.VISITORS) and rebuilt with their rollups.
    """

    neuron = models.ForeignKey(Neuron, on_delete=models.CASCADE, related_name="+")
    period_start = models.DateTimeField()
    device_type = models.CharField(max_length=16, default=ALL)
    country = models.CharField(max_length=2, default=ALL)
    utm_source = models.CharField(max_length=200, default=ALL)
    visitors = models.PositiveIntegerField(default=0)
    ids = models.BinaryField()

    class Meta:
        db_table = "analytics_rollup_visitors"
        constraints = [
            models.UniqueConstraint(
                fields=["neuron", "period_start", "device_type", "country", "utm_source"],
                name="uniq_rollup_visitors_key",
            ),
        ]
        indexes = [
            models.Index(
                fields=["device_type", "country", "utm_source", "period_start"],
                name="rollup_visitors_lookup_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.period_start:%Y-%m-%d %H:%M}: {self.visitors} visitors"


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
    # One more each time rollup rows or visitor sets of this granularity are rebuilt or dropped
    # (hours, days, visitor sets): with closed_through, what a report's cached sums are valid for.
    generation = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "analytics_rollup_watermarks"

    def __str__(self) -> str:
        return f"{self.granularity} closed through {self.closed_through:%Y-%m-%d %H:%M}"


class Action(models.Model):
    """A distinct (event type, event name, page path): the vocabulary of session sequences.

    Sequences store an action's id per event instead of its strings, so a funnel
    step or a journey's page is matched by looking ids up here once per request.
    """

    event_type = models.CharField(max_length=32)
    event_name = models.CharField(max_length=200, blank=True, default="")
    page_path = models.CharField(max_length=1024, blank=True, default="")
    # SHA-256 of the three strings: unique, and short enough for a B-tree whatever the path.
    digest = models.CharField(max_length=64, unique=True)

    class Meta:
        db_table = "analytics_actions"

    def __str__(self) -> str:
        return f"{self.event_type}:{self.event_name or self.page_path}"


class Visitor(models.Model):
    """A visitor of one site (neuron, anonymous id) under a compact integer id.

    Sequences and visitor rollups carry this id, so funnels group events by visitor,
    and distinct visitors are counted, with integers rather than strings. Created by
    the rollup jobs; `last_seen_at` is the start of the visitor's latest session
    rolled up (what retention measures from).
    """

    id = models.BigAutoField(primary_key=True)
    neuron = models.ForeignKey(Neuron, on_delete=models.CASCADE, related_name="+")
    anonymous_id = models.CharField(max_length=128)
    last_seen_at = models.DateTimeField()

    class Meta:
        db_table = "analytics_visitors"
        constraints = [
            models.UniqueConstraint(fields=["neuron", "anonymous_id"], name="uniq_analytics_visitor"),
        ]

    def __str__(self) -> str:
        return f"Visitor {self.pk}"


class SessionSequence(models.Model):
    """One session's events in order, packed: what funnels and journeys read instead of events.

    Built by the rollup jobs for sessions that started in closed hours (nothing in
    them can change any more), rebuilt when the reconcile job finds their hours
    changed. `events` holds, per event in (timestamp, id) order, the timestamp in
    microseconds since the epoch, the event id and the Action id, little-endian
    (analytics.sequences.EVENT_DTYPE). The visitor is (neuron, anonymous id), as in
    the events table, as a Visitor id; filters are copied from the session so reads
    need no join.
    """

    session = models.OneToOneField(UserSession, on_delete=models.CASCADE, primary_key=True, related_name="+")
    neuron = models.ForeignKey(Neuron, on_delete=models.CASCADE, related_name="+")
    anonymous_id = models.CharField(max_length=128, blank=True, default="")
    # The visitor, or none when the session has no anonymous id (it is then its own visitor).
    visitor = models.ForeignKey(Visitor, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    started_at = models.DateTimeField()
    device_type = models.CharField(max_length=16)
    country = models.CharField(max_length=2, blank=True, default="")
    utm_source = models.CharField(max_length=200, blank=True, default="")
    first_event_at = models.DateTimeField()
    last_event_at = models.DateTimeField()
    event_count = models.PositiveIntegerField()
    events = models.BinaryField()
    # The distinct Action ids of `events`, space-separated between spaces (" 3 17 42 "): reads
    # skip the sequences holding none of the actions they look for.
    actions = models.TextField(blank=True, default="")

    class Meta:
        db_table = "analytics_session_sequences"
        indexes = [
            models.Index(fields=["neuron", "last_event_at"], name="sequence_neuron_last_idx"),
            models.Index(fields=["started_at"], name="sequence_started_idx"),
        ]

    def __str__(self) -> str:
        return f"Sequence of session {self.session_id} ({self.event_count} events)"


class SequenceDay(models.Model):
    """The sequences of the sessions that started on one UTC day on one site, concatenated in
    session order: what funnels and journeys read for closed days, one row instead of thousands.

    Every day before its watermark (Granularity.SEQUENCE_DAYS) that has sequences has a row,
    built by the rollup jobs. A sequence deleted anywhere else (with its session, by erasure
    or retention) marks its day's row stale and blanks it in the same transaction (a
    post_delete receiver): reports then read that day from its sequences until the next run
    builds the row again. `headers` holds per session its id, visitor key (minus the session id
    without a visitor), event count and the positions of its device type, country and UTM
    source in `labels` (analytics.sequences.DAY_HEADER_DTYPE); `events` the sessions' packed
    events one after the other.
    """

    neuron = models.ForeignKey(Neuron, on_delete=models.CASCADE, related_name="+")
    day = models.DateTimeField(help_text="UTC midnight.")
    stale = models.BooleanField(default=False)
    session_count = models.PositiveIntegerField()
    first_event_at = models.DateTimeField()
    last_event_at = models.DateTimeField()
    headers = models.BinaryField()
    events = models.BinaryField()
    labels = models.JSONField(default=dict, help_text='{"device_type": [...], "country": [...], "utm_source": [...]}')

    class Meta:
        db_table = "analytics_sequence_days"
        constraints = [
            models.UniqueConstraint(fields=["neuron", "day"], name="uniq_sequence_day"),
        ]
        indexes = [models.Index(fields=["neuron", "last_event_at"], name="sequence_day_neuron_last_idx")]

    def __str__(self) -> str:
        return f"Sequences of {self.day:%Y-%m-%d} ({self.session_count} sessions)"
