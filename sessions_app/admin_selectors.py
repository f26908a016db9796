"""Reads behind the operators' admin API and dashboard explorer."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.db.models import (
    BooleanField,
    CharField,
    Exists,
    ExpressionWrapper,
    F,
    Func,
    OuterRef,
    Q,
    QuerySet,
    TextField,
)
from django.db.models.functions import Cast
from django.http import QueryDict
from django_filters import MultipleChoiceFilter

from config.api.errors import ValidationFailed
from sessions_app.filters import SessionFilter
from sessions_app.models import BehaviorEvent, UserSession


@dataclass(frozen=True)
class EventCriteria:
    """Sessions that have (or, with exists=False, lack) an event matching every given field."""

    event_type: str | None = None
    event_name: str | None = None
    path_prefix: str | None = None
    after: datetime | None = None
    before: datetime | None = None
    exists: bool = True

    def queryset(self) -> QuerySet[BehaviorEvent]:
        events = BehaviorEvent.objects.filter(session=OuterRef("pk"))
        if self.event_type:
            events = events.filter(event_type=self.event_type)
        if self.event_name:
            events = events.filter(event_name=self.event_name)
        if self.path_prefix:
            events = events.filter(page_path__startswith=self.path_prefix)
        if self.after:
            events = events.filter(timestamp__gte=self.after)
        if self.before:
            events = events.filter(timestamp__lt=self.before)
        return events


def session_filter_errors(filters: Mapping[str, Any], *, ignore: frozenset[str] = frozenset()) -> dict[str, list[str]]:
    """Unknown filter names, so a typo fails loudly instead of matching every session; and in
    a search document, values a query parameter could not carry (an object, or a list where
    the filter takes one value), which the filters would otherwise fail on or match nothing with."""
    known = set(SessionFilter.base_filters)
    errors = {name: ["Unknown filter."] for name in sorted(set(filters) - known - ignore)}
    if isinstance(filters, QueryDict):
        return errors
    for name in sorted(set(filters) & known):
        value = filters[name]
        if isinstance(SessionFilter.base_filters[name], MultipleChoiceFilter):
            if isinstance(value, list) and all(isinstance(item, str) for item in value) or isinstance(value, str):
                continue
            errors[name] = ["Expected a string or a list of strings."]
        elif value is not None and not isinstance(value, str | int | float | bool):
            errors[name] = ["Expected a string, a number or a boolean."]
    return errors


def session_admin_list(
    *,
    filters: Mapping[str, Any],
    events: list[EventCriteria] | None = None,
    ignore: frozenset[str] = frozenset(),
) -> QuerySet[UserSession]:
    """Sessions matching the filters (query parameters or a search document), newest first."""
    errors = session_filter_errors(filters, ignore=ignore)
    if errors:
        raise ValidationFailed("Unknown filters; see errors.", errors=errors)
    filterset = SessionFilter(data=filters, queryset=UserSession.objects.select_related("neuron", "profile"))
    if not filterset.is_valid():
        raise ValidationFailed(
            "The filters are invalid; see errors.",
            errors={name: [str(m) for m in messages] for name, messages in filterset.errors.items()},
        )
    queryset = filterset.qs
    for criteria in events or []:
        match = Exists(criteria.queryset())
        queryset = queryset.filter(match if criteria.exists else ~match)
    return queryset.order_by("-id")


class IsoUtc(Func):
    """A timestamp as ISO 8601 UTC text, formatted by the database.

    Parsing timestamps into datetimes and formatting them back took over half of an
    export's time (profiled on 20,000 rows); the database writes the text directly.
    """

    output_field = CharField()

    def as_postgresql(self, compiler, connection, **extra_context):
        template = "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        return self.as_sql(compiler, connection, template=template, **extra_context)

    def as_sqlite(self, compiler, connection, **extra_context):
        # SQLite keeps UTC text; %f is seconds with milliseconds. Each % is written %%%% in a
        # template: formatting the template leaves %%, the escape for a literal % in SQL
        # (as django.db.models.functions.Now does).
        template = "strftime('%%%%Y-%%%%m-%%%%dT%%%%H:%%%%M:%%%%fZ', %(expressions)s)"
        return self.as_sql(compiler, connection, template=template, **extra_context)


EXPORT_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("sessionId", F("public_id")),
    ("neuron", F("neuron__slug")),
    ("anonymousId", F("anonymous_id")),
    (
        "identified",
        ExpressionWrapper(Q(profile__user_id_hash__isnull=False), output_field=BooleanField()),
    ),
    ("deviceType", F("device_type")),
    ("browser", F("browser")),
    ("os", F("os")),
    ("country", F("country")),
    ("referrer", F("referrer")),
    ("landingPage", F("landing_page")),
    ("utmSource", F("utm_source")),
    ("utmMedium", F("utm_medium")),
    ("utmCampaign", F("utm_campaign")),
    ("startedAt", IsoUtc("started_at")),
    ("lastActivityAt", IsoUtc("last_activity_at")),
    ("endedAt", IsoUtc("ended_at")),
    ("endReason", F("end_reason")),
    ("eventCount", F("event_count")),
    ("pageViewCount", F("page_view_count")),
    ("conversionCount", F("conversion_count")),
    ("engagementScore", F("engagement_score")),
    # Read as text and parsed with orjson: several times cheaper than the JSONField converter.
    ("consent", Cast("consent", TextField())),
)
EXPORT_NAMES = tuple(name for name, _ in EXPORT_COLUMNS)
EXPORT_CHUNK_ROWS = 2000


def session_export_rows(*, queryset: QuerySet[UserSession], chunk_size: int | None = None) -> Iterator[dict[str, Any]]:
    """Rows for an export, read in chunks (a server-side cursor on PostgreSQL): memory stays flat.

    Timestamps are ISO 8601 UTC strings (None when unset); consent is an object.
    """
    chunk_size = chunk_size or EXPORT_CHUNK_ROWS
    aliases = {f"x_{name}": expression for name, expression in EXPORT_COLUMNS}
    # Oldest first: an export is a stable listing, not a feed.
    rows = queryset.select_related(None).order_by("id").annotate(**aliases).values_list(*aliases)
    for row in rows.iterator(chunk_size=chunk_size):
        record = dict(zip(EXPORT_NAMES, row, strict=True))
        record["sessionId"] = str(record["sessionId"])
        record["consent"] = orjson.loads(record["consent"]) if record["consent"] else {}
        yield record
