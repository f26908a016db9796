"""Validation of incoming events, without a serializer per event.

Events arrive hundreds at a time on the hot path; a DRF serializer per event
costs more than the database write of the whole batch (see bench/ingest.py), so
events are checked here by hand with the same strictness as StrictSerializer:
unknown fields, wrong types, oversize values and bad timestamps are collected
for every event, and the whole batch is rejected with each error named as
`events[index].field`.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
from django.conf import settings

from config.api.datetimes import as_utc
from config.api.errors import PayloadTooLarge, ValidationFailed
from config.api.serializers import json_has_nul

EVENT_TYPE_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
EVENT_FIELDS = frozenset({"eventType", "eventName", "eventData", "page", "timestamp", "messageId"})
PAGE_LIMITS = {"url": 2048, "path": 1024, "title": 512, "referrer": 2048}
# Counted as page views by the session counters and the anonymous aggregates.
PAGE_VIEW_TYPES = frozenset({"page_view", "screen_view"})
CONVERSION_TYPES = frozenset({"conversion"})

REQUIRED = "This field is required."
NOT_STRING = "Not a valid string."
NOT_OBJECT = "Expected a JSON object."
NUL = "Must not contain NUL characters."


@dataclass(slots=True)
class EventIn:
    """One validated event, before clock-skew correction."""

    event_type: str
    event_name: str = ""
    properties: dict[str, Any] = field(default_factory=dict)
    page_url: str = ""
    page_path: str = ""
    page_title: str = ""
    referrer: str = ""
    timestamp: datetime | None = None  # client clock, as sent
    message_id: str = ""
    generated_id: bool = False  # the server made the message id up: nothing to deduplicate against

    @property
    def is_page_view(self) -> bool:
        return self.event_type in PAGE_VIEW_TYPES


def message_id_new() -> str:
    return str(uuid.uuid4())


def timestamp_parse(value: Any) -> datetime:
    """ISO 8601 (as Segment sends it: `2024-05-01T12:00:00.000Z`), in UTC; naive times are UTC."""
    if not isinstance(value, str) or not 8 <= len(value) <= 64:
        raise ValueError("not an ISO 8601 string")
    # In UTC: PostgreSQL refuses offsets beyond ±15:59, which ISO 8601 and Python allow.
    return as_utc(datetime.fromisoformat(value))


def path_from_url(url: str) -> str:
    try:
        return urlsplit(url).path[: PAGE_LIMITS["path"]]
    except ValueError:
        return ""


class ErrorBag:
    """Collects {"field.path": [messages]} across a whole batch."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def raise_if_any(self, detail: str = "The request has invalid fields; see errors.") -> None:
        if self.errors:
            raise ValidationFailed(detail, errors=self.errors)


def text(
    value: Any, *, name: str, max_length: int, bag: ErrorBag, required: bool = False, allow_blank: bool = True
) -> str:
    if value is None:
        if required:
            bag.add(name, REQUIRED)
        return ""
    if not isinstance(value, str):
        bag.add(name, NOT_STRING)
        return ""
    if len(value) > max_length:
        bag.add(name, f"Ensure this field has no more than {max_length} characters.")
        return ""
    if not value and (required or not allow_blank):
        bag.add(name, "This field may not be blank.")
        return ""
    if "\x00" in value:
        bag.add(name, NUL)
        return ""
    return value


def json_object(value: Any, *, name: str, max_bytes: int, bag: ErrorBag) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        bag.add(name, NOT_OBJECT)
        return {}
    try:
        dumped = orjson.dumps(value)
    except orjson.JSONEncodeError:  # an integer past 64 bits (JSON parsers make those floats)
        bag.add(name, NOT_OBJECT)
        return {}
    if len(dumped) > max_bytes:
        bag.add(name, f"Must be at most {max_bytes} bytes of JSON.")
        return {}
    # PostgreSQL's jsonb cannot hold \u0000; refusing it here keeps one rule on both databases.
    if json_has_nul(value, dumped):
        bag.add(name, NUL)
        return {}
    return value


def event_parse(raw: Any, *, prefix: str, bag: ErrorBag) -> EventIn | None:
    """One event of our own API; errors are named `{prefix}field`."""
    if not isinstance(raw, dict):
        bag.add(prefix.rstrip(".") or "body", NOT_OBJECT)
        return None
    before = len(bag.errors)
    for unknown in raw.keys() - EVENT_FIELDS:
        bag.add(f"{prefix}{unknown}", "Unknown field.")
    event_type = text(raw.get("eventType"), name=f"{prefix}eventType", max_length=32, bag=bag, required=True)
    if event_type and not EVENT_TYPE_RE.fullmatch(event_type):
        bag.add(f"{prefix}eventType", "Use lowercase letters, digits and underscores, starting with a letter.")
    event_name = text(raw.get("eventName"), name=f"{prefix}eventName", max_length=200, bag=bag)
    properties = json_object(
        raw.get("eventData"), name=f"{prefix}eventData", max_bytes=settings.EVENT_DATA_MAX_BYTES, bag=bag
    )
    page: dict[str, str] = {}
    raw_page = raw.get("page")
    if raw_page is not None:
        if not isinstance(raw_page, dict):
            bag.add(f"{prefix}page", NOT_OBJECT)
        else:
            for unknown in raw_page.keys() - PAGE_LIMITS.keys():
                bag.add(f"{prefix}page.{unknown}", "Unknown field.")
            for key, limit in PAGE_LIMITS.items():
                page[key] = text(raw_page.get(key), name=f"{prefix}page.{key}", max_length=limit, bag=bag)
    timestamp = None
    if raw.get("timestamp") is not None:
        try:
            timestamp = timestamp_parse(raw["timestamp"])
        except ValueError:
            bag.add(f"{prefix}timestamp", "Expected an ISO 8601 date-time.")
    message_id = text(raw.get("messageId"), name=f"{prefix}messageId", max_length=128, bag=bag, allow_blank=False)
    if len(bag.errors) != before:
        return None
    url = page.get("url", "")
    return EventIn(
        event_type=event_type,
        event_name=event_name,
        properties=properties,
        page_url=url,
        page_path=page.get("path") or path_from_url(url),
        page_title=page.get("title", ""),
        referrer=page.get("referrer", ""),
        timestamp=timestamp,
        message_id=message_id or message_id_new(),
        generated_id=not message_id,
    )


def events_payload_parse(payload: Any) -> tuple[list[EventIn], datetime | None]:
    """The body of POST /api/sessions/{id}/events: one event, or {"events": [...]}; either
    may carry `sentAt`. Raises ValidationFailed naming every bad index and field."""
    bag = ErrorBag()
    if not isinstance(payload, dict):
        bag.add("body", NOT_OBJECT)
        bag.raise_if_any()
    sent_at = None
    if payload.get("sentAt") is not None:
        try:
            sent_at = timestamp_parse(payload["sentAt"])
        except ValueError:
            bag.add("sentAt", "Expected an ISO 8601 date-time.")
    events: list[EventIn] = []
    if "events" in payload:
        for unknown in payload.keys() - {"events", "sentAt"}:
            bag.add(unknown, "Unknown field.")
        raw_events = payload["events"]
        if not isinstance(raw_events, list):
            bag.add("events", "Expected a list of events.")
        elif not raw_events:
            bag.add("events", "Send at least one event.")
        elif len(raw_events) > settings.EVENTS_MAX_BATCH:
            raise PayloadTooLarge(
                f"A batch holds at most {settings.EVENTS_MAX_BATCH} events; this one has {len(raw_events)}.",
                errors={"events": [f"Ensure this list has at most {settings.EVENTS_MAX_BATCH} events."]},
            )
        else:
            for index, raw in enumerate(raw_events):
                event = event_parse(raw, prefix=f"events[{index}].", bag=bag)
                if event is not None:
                    events.append(event)
    else:
        single = {key: value for key, value in payload.items() if key != "sentAt"}
        event = event_parse(single, prefix="", bag=bag)
        if event is not None:
            events.append(event)
    bag.raise_if_any()
    return events, sent_at
