"""Reads behind the operators' admin API and dashboard explorer."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Exists, OuterRef, QuerySet

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
    """Unknown filter names, so a typo fails loudly instead of matching every session."""
    known = set(SessionFilter.base_filters)
    return {name: ["Unknown filter."] for name in sorted(set(filters) - known - ignore)}


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


EXPORT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("sessionId", "public_id"),
    ("neuron", "neuron__slug"),
    ("anonymousId", "anonymous_id"),
    ("identified", "profile__user_id_hash"),
    ("deviceType", "device_type"),
    ("browser", "browser"),
    ("os", "os"),
    ("country", "country"),
    ("referrer", "referrer"),
    ("landingPage", "landing_page"),
    ("utmSource", "utm_source"),
    ("utmMedium", "utm_medium"),
    ("utmCampaign", "utm_campaign"),
    ("startedAt", "started_at"),
    ("lastActivityAt", "last_activity_at"),
    ("endedAt", "ended_at"),
    ("endReason", "end_reason"),
    ("eventCount", "event_count"),
    ("pageViewCount", "page_view_count"),
    ("conversionCount", "conversion_count"),
    ("engagementScore", "engagement_score"),
    ("consent", "consent"),
)


EXPORT_CHUNK_ROWS = 2000


def session_export_rows(*, queryset: QuerySet[UserSession], chunk_size: int | None = None) -> Iterator[dict[str, Any]]:
    """Rows for an export, read in chunks (a server-side cursor on PostgreSQL): memory stays flat."""
    chunk_size = chunk_size or EXPORT_CHUNK_ROWS
    names = [name for name, _ in EXPORT_COLUMNS]
    columns = [column for _, column in EXPORT_COLUMNS]
    # Oldest first: an export is a stable listing, not a feed.
    rows = queryset.select_related(None).order_by("id").values_list(*columns)
    for row in rows.iterator(chunk_size=chunk_size):
        record = dict(zip(names, row, strict=True))
        record["identified"] = record["identified"] is not None
        yield record
