"""The Segment-compatible tracking API (/v1): validation of calls and their effects.

Any Segment or RudderStack SDK can send here unchanged. Calls are validated as
Segment documents them (unknown top-level fields are ignored, as Segment does,
because SDKs add their own), then:

- track / page / screen become events in the anonymous id's live session, or in a
  new one when it has none (server-side sessionization: SDKs know nothing of our
  sessions), through the same events_ingest as our own API;
- identify / group go through session_update (identity, traits), alias through
  profile_alias;
- without analytics consent (context.consent.categoryPreferences, matched to our
  purposes case-insensitively, on top of what the session already knew) no
  session is created or touched: events only increment the anonymous aggregates,
  identify / group / alias are dropped (answered 200, as Segment does for items it drops).

A request is one transaction: a 200 means everything in it is committed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from django.conf import settings
from django.db import connection, transaction

from config.api.errors import PayloadTooLarge
from federation.models import Neuron
from privacy.consent import ALIASES, PURPOSES, consent_resolve, has_consent
from privacy.crypto import identifier_hash
from privacy.services import identifiers_erased
from sessions_app.enrichment import RequestMeta, request_meta_from
from sessions_app.event_input import (
    NOT_OBJECT,
    ErrorBag,
    EventIn,
    json_object,
    message_id_new,
    path_from_url,
    text,
    timestamp_parse,
)
from sessions_app.identity import profile_alias
from sessions_app.ingestion import IngestResult, event_time, events_count_anonymously, events_ingest
from sessions_app.models import SessionChannel, UserSession
from sessions_app.selectors import session_current_for_anonymous_id
from sessions_app.services import session_create, session_update

CALL_TYPES = ("track", "page", "screen", "identify", "group", "alias")
EVENT_CALLS = frozenset({"track", "page", "screen"})
# Segment's e-commerce spec names the event that is a conversion.
CONVERSION_EVENTS = frozenset({"order completed"})
UTM_FROM_CAMPAIGN = {"source": "source", "medium": "medium", "name": "campaign", "term": "term", "content": "content"}
_PURPOSES_BY_NAME = {name.lower(): name for name in PURPOSES} | {k.lower(): v for k, v in ALIASES.items()}


@dataclass(slots=True)
class SegmentCall:
    type: str
    anonymous_id: str  # the sent anonymousId, or one derived from userId (a keyed hash)
    user_id: str | None
    context: dict[str, Any]
    consent: dict[str, bool] | None
    sent_at: datetime | None
    event: EventIn | None = None
    traits: dict[str, Any] = field(default_factory=dict)
    group_id: str = ""
    previous_id: str = ""


@dataclass(frozen=True)
class SegmentResult:
    stored: int = 0
    duplicates: int = 0
    anonymous: int = 0
    dropped: int = 0  # identify / group / alias without analytics consent


# --- validation ---------------------------------------------------------------


def _identifier(value: Any, *, name: str, max_length: int, bag: ErrorBag) -> str | None:
    """Segment ids are strings; some SDKs send numbers, which Segment accepts too."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        bag.add(name, "Expected a string.")
        return None
    return text(str(value), name=name, max_length=max_length, bag=bag) or None


def _time(value: Any, *, name: str, bag: ErrorBag) -> datetime | None:
    if value is None:
        return None
    try:
        return timestamp_parse(value)
    except ValueError:
        bag.add(name, "Expected an ISO 8601 date-time.")
        return None


def consent_from_context(context: dict[str, Any], *, prefix: str, bag: ErrorBag) -> dict[str, bool] | None:
    """context.consent.categoryPreferences -> our purposes (case-insensitive); None when absent."""
    consent = context.get("consent")
    if consent is None:
        return None
    if not isinstance(consent, dict):
        bag.add(f"{prefix}context.consent", NOT_OBJECT)
        return None
    prefs = consent.get("categoryPreferences")
    if prefs is None:
        return None
    if not isinstance(prefs, dict):
        bag.add(f"{prefix}context.consent.categoryPreferences", NOT_OBJECT)
        return None
    given: dict[str, bool] = {}
    for name, value in prefs.items():
        purpose = _PURPOSES_BY_NAME.get(str(name).lower())
        if purpose is None:
            continue  # a category of the site's own that maps to none of our purposes
        if not isinstance(value, bool):
            bag.add(f"{prefix}context.consent.categoryPreferences.{name}", "Must be true or false.")
            continue
        given[purpose] = value
    return given


def _page(source: dict[str, Any], *, prefix: str, bag: ErrorBag) -> dict[str, str]:
    out = {}
    for key, limit in (("url", 2048), ("path", 1024), ("title", 512), ("referrer", 2048)):
        out[key] = text(source.get(key), name=f"{prefix}{key}", max_length=limit, bag=bag)
    if not out["path"] and out["url"]:
        out["path"] = path_from_url(out["url"])
    return out


def segment_call_parse(
    raw: Any,
    *,
    call_type: str | None,
    prefix: str,
    bag: ErrorBag,
    batch_context: dict[str, Any] | None = None,
    batch_sent_at: datetime | None = None,
    received_at: datetime | None = None,
) -> SegmentCall | None:
    """One Segment call. `call_type` is fixed by the endpoint, or read from `type` in a batch."""
    if not isinstance(raw, dict):
        bag.add(prefix.rstrip(".") or "body", NOT_OBJECT)
        return None
    before = len(bag.errors)
    kind = call_type or raw.get("type")
    if kind not in CALL_TYPES:
        bag.add(f"{prefix}type", f"Expected one of: {', '.join(CALL_TYPES)}.")
        return None
    user_id = _identifier(raw.get("userId"), name=f"{prefix}userId", max_length=255, bag=bag)
    anonymous_id = _identifier(raw.get("anonymousId"), name=f"{prefix}anonymousId", max_length=128, bag=bag)
    if kind != "alias" and not user_id and not anonymous_id and len(bag.errors) == before:
        bag.add(f"{prefix}userId", "Send userId or anonymousId.")
    context = json_object(
        raw.get("context"), name=f"{prefix}context", max_bytes=settings.SEGMENT_MAX_CALL_BYTES, bag=bag
    )
    if batch_context:
        context = {**batch_context, **context}
    properties = json_object(
        raw.get("properties"), name=f"{prefix}properties", max_bytes=settings.EVENT_DATA_MAX_BYTES, bag=bag
    )
    traits = json_object(raw.get("traits"), name=f"{prefix}traits", max_bytes=16 * 1024, bag=bag)
    json_object(
        raw.get("integrations"), name=f"{prefix}integrations", max_bytes=settings.SEGMENT_MAX_CALL_BYTES, bag=bag
    )
    consent = consent_from_context(context, prefix=prefix, bag=bag)
    # Segment corrects originalTimestamp (the device clock) when there is one, else timestamp.
    client_time = _time(raw.get("originalTimestamp"), name=f"{prefix}originalTimestamp", bag=bag) or _time(
        raw.get("timestamp"), name=f"{prefix}timestamp", bag=bag
    )
    sent_at = _time(raw.get("sentAt"), name=f"{prefix}sentAt", bag=bag) or batch_sent_at
    message_id = text(raw.get("messageId"), name=f"{prefix}messageId", max_length=128, bag=bag)

    context_page = context.get("page") if isinstance(context.get("page"), dict) else {}
    call = SegmentCall(
        type=kind,
        anonymous_id="",
        user_id=user_id,
        context=context,
        consent=consent,
        sent_at=sent_at,
        traits=traits,
    )
    if kind in EVENT_CALLS:
        page = _page(context_page, prefix=f"{prefix}context.page.", bag=bag)
        name = raw.get("event") if kind == "track" else raw.get("name")
        event_name = text(
            name,
            name=f"{prefix}{'event' if kind == 'track' else 'name'}",
            max_length=200,
            bag=bag,
            required=kind == "track",
        )
        if kind == "page":
            # page() puts url/path/title/referrer in properties; they win over context.page.
            own = _page(properties, prefix=f"{prefix}properties.", bag=bag)
            page = {key: own[key] or page[key] for key in page}
            event_type = "page_view"
        elif kind == "screen":
            event_type = "screen_view"
        else:
            event_type = "conversion" if event_name.lower() in CONVERSION_EVENTS else "track"
        call.event = EventIn(
            event_type=event_type,
            event_name=event_name,
            properties=properties,
            page_url=page["url"],
            page_path=page["path"],
            page_title=page["title"],
            referrer=page["referrer"],
            timestamp=client_time,
            message_id=message_id or message_id_new(),
            generated_id=not message_id,
        )
        if received_at is not None:
            # Checked here, not only when stored, so that a batch names the call (batch[i]).
            try:
                event_time(event=call.event, sent_at=sent_at, received_at=received_at)
            except OverflowError:
                bag.add(f"{prefix}timestamp", "The timestamp is out of range once corrected for the client clock.")
    elif kind == "group":
        call.group_id = _identifier(raw.get("groupId"), name=f"{prefix}groupId", max_length=255, bag=bag) or ""
        if not call.group_id and f"{prefix}groupId" not in bag.errors:
            bag.add(f"{prefix}groupId", "This field is required.")
    elif kind == "alias":
        call.previous_id = _identifier(raw.get("previousId"), name=f"{prefix}previousId", max_length=255, bag=bag) or ""
        for name, value in ((f"{prefix}previousId", call.previous_id), (f"{prefix}userId", user_id)):
            if not value and name not in bag.errors:
                bag.add(name, "This field is required.")
    if len(bag.errors) != before:
        return None
    # A call with only a userId still needs a visitor key for sessionization; the keyed
    # hash keeps the user id itself out of the anonymous id column.
    call.anonymous_id = anonymous_id or "u:" + identifier_hash(user_id or call.previous_id, namespace="segment")[:48]
    return call


def segment_calls_parse(
    payload: Any, *, call_type: str | None, received_at: datetime | None = None
) -> list[SegmentCall]:
    """A single call's body, or a batch (`call_type` None) whose top-level `context` and
    `integrations` merge into each item. All or nothing: errors name `batch[i].field`.
    With `received_at`, event times are also checked to stay in range once corrected for
    clock skew (receivedAt - (sentAt - timestamp))."""
    bag = ErrorBag()
    if not isinstance(payload, dict):
        bag.add("body", NOT_OBJECT)
        bag.raise_if_any()
    if call_type is not None:
        call = segment_call_parse(payload, call_type=call_type, prefix="", bag=bag, received_at=received_at)
        bag.raise_if_any()
        return [call] if call is not None else []

    items = payload.get("batch")
    if not isinstance(items, list):
        bag.add("batch", "Expected a list of calls.")
        bag.raise_if_any()
    if len(items) > settings.SEGMENT_MAX_BATCH_EVENTS:
        raise PayloadTooLarge(
            f"A batch holds at most {settings.SEGMENT_MAX_BATCH_EVENTS} calls; this one has {len(items)}.",
            errors={"batch": [f"Ensure this list has at most {settings.SEGMENT_MAX_BATCH_EVENTS} calls."]},
        )
    batch_context = json_object(
        payload.get("context"), name="context", max_bytes=settings.SEGMENT_MAX_CALL_BYTES, bag=bag
    )
    json_object(payload.get("integrations"), name="integrations", max_bytes=settings.SEGMENT_MAX_CALL_BYTES, bag=bag)
    batch_sent_at = _time(payload.get("sentAt"), name="sentAt", bag=bag)
    calls: list[SegmentCall] = []
    for index, raw in enumerate(items):
        prefix = f"batch[{index}]."
        if isinstance(raw, dict):
            try:
                size = len(orjson.dumps(raw))
            except orjson.JSONEncodeError:  # nested past orjson's 254 levels (the body parser allows 1,024)
                bag.add(f"batch[{index}]", "A call may nest at most 254 levels deep.")
                continue
            if size > settings.SEGMENT_MAX_CALL_BYTES:
                bag.add(f"batch[{index}]", f"A call may be at most {settings.SEGMENT_MAX_CALL_BYTES} bytes.")
                continue
        call = segment_call_parse(
            raw,
            call_type=None,
            prefix=prefix,
            bag=bag,
            batch_context=batch_context,
            batch_sent_at=batch_sent_at,
            received_at=received_at,
        )
        if call is not None:
            calls.append(call)
    bag.raise_if_any()
    return calls


# --- effects ------------------------------------------------------------------


def _call_meta(call: SegmentCall, request_meta: dict[str, Any]) -> RequestMeta:
    """context.userAgent and context.ip, else the request's own (truncated at once)."""
    ua = call.context.get("userAgent")
    ip = call.context.get("ip")
    return request_meta_from(
        request_meta,
        user_agent=ua[:1024] if isinstance(ua, str) else None,
        ip=ip if isinstance(ip, str) else None,
    )


def _utm(context: dict[str, Any]) -> dict[str, str]:
    campaign = context.get("campaign")
    if not isinstance(campaign, dict):
        return {}
    return {ours: value for theirs, ours in UTM_FROM_CAMPAIGN.items() if isinstance(value := campaign.get(theirs), str)}


class _Batch:
    """Sessions found or opened while processing one request, and their pending events."""

    def __init__(self, *, neuron: Neuron, request_meta: dict[str, Any], received_at: datetime) -> None:
        self.neuron = neuron
        self.request_meta = request_meta
        self.received_at = received_at
        self.sessions: dict[str, UserSession | None] = {}
        self.identified: set[tuple[int, str]] = set()
        self.pending: dict[tuple[int, datetime | None], tuple[UserSession, list[EventIn]]] = {}
        self.anonymous: dict[tuple[str, str], list[EventIn]] = {}
        self.totals = {"stored": 0, "duplicates": 0, "anonymous": 0, "dropped": 0}

    def live_session(self, anonymous_id: str) -> UserSession | None:
        if anonymous_id not in self.sessions:
            self.sessions[anonymous_id] = session_current_for_anonymous_id(
                neuron_id=self.neuron.pk, anonymous_id=anonymous_id, now=self.received_at
            )
        return self.sessions[anonymous_id]

    def session_for(self, call: SegmentCall) -> UserSession:
        session = self.live_session(call.anonymous_id)
        if session is None:
            # Concurrent first calls of a visitor (an SDK flushing two queues) would each open a
            # session: the one that takes the lock first opens it, the others then find it.
            _anonymous_id_lock(neuron_id=self.neuron.pk, anonymous_id=call.anonymous_id)
            self.sessions.pop(call.anonymous_id, None)
            session = self.live_session(call.anonymous_id)
        if session is None:
            page = call.context.get("page") if isinstance(call.context.get("page"), dict) else {}
            referrer = page.get("referrer") if isinstance(page.get("referrer"), str) else ""
            landing = page.get("path")
            if not isinstance(landing, str) or not landing:
                landing = path_from_url(page["url"]) if isinstance(page.get("url"), str) else ""
            session = session_create(
                neuron=self.neuron,
                request_meta=_call_meta(call, self.request_meta),
                anonymous_id=call.anonymous_id,
                consent=call.consent,
                referrer=referrer,
                landing_page=landing,
                utm=_utm(call.context),
                channel=SessionChannel.SEGMENT,
            ).session
            self.sessions[call.anonymous_id] = session
        elif (
            call.consent is not None
            and consent_resolve(given=call.consent, previous=session.consent) != session.consent
        ):
            session = session_update(session=session, consent=call.consent).session
            self.sessions[call.anonymous_id] = session
        if call.user_id and (session.pk, call.user_id) not in self.identified and call.type != "alias":
            session = session_update(session=session, user_id=call.user_id).session
            self.sessions[call.anonymous_id] = session
            self.identified.add((session.pk, call.user_id))
        return session

    def flush(self) -> None:
        for (_, sent_at), (session, events) in self.pending.items():
            self._add(events_ingest(session=session, events=events, sent_at=sent_at, received_at=self.received_at))
        self.pending.clear()
        for (device_type, country), events in self.anonymous.items():
            self._add(
                events_count_anonymously(
                    neuron_id=self.neuron.pk,
                    device_type=device_type,
                    country=country,
                    events=events,
                    received_at=self.received_at,
                )
            )
        self.anonymous.clear()

    def _add(self, result: IngestResult) -> None:
        self.totals["stored"] += result.stored
        self.totals["duplicates"] += result.duplicates
        self.totals["anonymous"] += result.anonymous


def _call_identifiers(call: SegmentCall) -> list[tuple[str, str]]:
    pairs = [("anonymousId", call.anonymous_id)]
    for user_id in (call.user_id, call.previous_id):
        if user_id:
            pairs += [("userId", user_id), ("anonymousId", user_id)]
    return pairs


def _anonymous_id_lock(*, neuron_id: int, anonymous_id: str) -> None:
    """Hold, until the transaction ends, a lock on opening a session for this anonymous id
    (PostgreSQL; SQLite runs one write transaction at a time)."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"v1-session:{neuron_id}:{anonymous_id}"]
        )


@transaction.atomic
def segment_calls_process(
    *, neuron: Neuron, calls: list[SegmentCall], request_meta: dict[str, Any], received_at: datetime
) -> SegmentResult:
    """Apply validated /v1 calls in order, in one transaction."""
    batch = _Batch(neuron=neuron, request_meta=request_meta, received_at=received_at)
    # Late calls about an erased subject (privacy tombstones) are dropped, never stored.
    erased = identifiers_erased(
        identifiers=[pair for call in calls for pair in _call_identifiers(call)],
        neuron_id=neuron.pk,
    )
    for call in calls:
        if erased and any(pair in erased for pair in _call_identifiers(call)):
            batch.totals["dropped"] += 1
            continue
        existing = batch.live_session(call.anonymous_id)
        effective = consent_resolve(given=call.consent, previous=existing.consent if existing else None)
        if not has_consent(effective, "analytics"):
            if existing is not None and call.consent is not None and effective != existing.consent:
                # A withdrawal reaches the session even though nothing else is recorded.
                batch.sessions[call.anonymous_id] = session_update(session=existing, consent=call.consent).session
            if call.event is not None:
                meta = _call_meta(call, request_meta)
                batch.anonymous.setdefault((meta.device.device_type, meta.country), []).append(call.event)
            else:
                batch.totals["dropped"] += 1
            continue
        if call.type == "alias":
            batch.flush()
            profile_alias(neuron=neuron, previous_id=call.previous_id, user_id=call.user_id or "", now=received_at)
            continue
        session = batch.session_for(call)
        if call.event is not None:
            key = (session.pk, call.sent_at)
            batch.pending.setdefault(key, (session, []))[1].append(call.event)
            continue
        batch.flush()
        traits = dict(call.traits)
        if call.type == "group":
            profile = session.profile
            # A `groups` trait that is not an object (an identify() may have set anything) is replaced.
            known = profile.traits.get("groups") if profile else None
            groups = dict(known) if isinstance(known, dict) else {}
            groups[call.group_id] = call.traits
            traits = {"groups": groups}
        if traits:
            batch.sessions[call.anonymous_id] = session_update(session=session, traits=traits).session
    batch.flush()
    return SegmentResult(**batch.totals)
