"""Live counters for the dashboard: per-minute increments in the cache, best-effort.

Ingestion calls `live_record_events` after its transaction commits; the dashboard
reads `live_snapshot`. The database stays the record: these counters may miss
increments while Redis is down, and nothing else depends on them, so no failure
here ever reaches the caller.

Increments are summed in the process and published every LIVE_COUNTER_FLUSH_SECONDS
(0.5 s) by a timer, in one pipelined round trip for everything recorded meanwhile: a
request pays for adding to a dict, not for a Redis round trip (which cost a single-event
request a quarter of its CPU). The timer runs only while something waits to be published;
`live_snapshot` publishes this process's pending increments first, and the process
publishes them at exit. A process killed outright loses at most one interval of
counters, never an event. LIVE_COUNTER_FLUSH_SECONDS = 0 publishes on every call.

After a failure the cache is skipped for LIVE_COUNTER_BACKOFF_SECONDS, so an outage
costs one timeout per process per backoff period, not one per request. Without Redis
(the embedded default) the local-memory cache holds the counters of this process only.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from config.redis_clients import redis_client, redis_client_forget

logger = logging.getLogger(__name__)

ALL = "all"
SUMMARY_FIELDS = ("events", "pageViews", "conversions", "anonymous")
PAGE_VIEW_TYPES = frozenset({"page_view", "screen_view"})

_state_lock = threading.Lock()
_down_until = 0.0


def _minute(at: datetime) -> int:
    return int(at.timestamp()) // 60


def _prefix() -> str:
    return f"{settings.CACHES['default'].get('KEY_PREFIX') or 'spe'}:live"


def _keys(scope: str | int, minute: int) -> tuple[str, str]:
    base = f"{_prefix()}:{scope}:{minute}"
    return base + ":c", base + ":s"


def _redis() -> Any:
    # Tighter timeouts than the cache's: a live counter is never worth a slow request.
    return redis_client("live", socket_connect_timeout=0.2, socket_timeout=0.2)


def _available() -> bool:
    return time.monotonic() >= _down_until


def _mark_down(exc: Exception) -> None:
    global _down_until
    with _state_lock:
        if time.monotonic() >= _down_until:
            logger.warning("live counters unavailable (%s); skipping the cache for a while", exc.__class__.__name__)
        _down_until = time.monotonic() + settings.LIVE_COUNTER_BACKOFF_SECONDS


def live_reset_backoff() -> None:
    """Forget a recorded outage (tests, and operators after fixing Redis)."""
    global _down_until
    redis_client_forget("live")
    with _state_lock:
        _down_until = 0.0


def _fields(event_types: Mapping[str, int], anonymous: int) -> dict[str, int]:
    fields: dict[str, int] = {}
    total = 0
    for event_type, count in event_types.items():
        if count <= 0:
            continue
        total += count
        fields[f"type:{event_type}"] = fields.get(f"type:{event_type}", 0) + count
        if event_type in PAGE_VIEW_TYPES:
            fields["pageViews"] = fields.get("pageViews", 0) + count
        elif event_type == "conversion":
            fields["conversions"] = fields.get("conversions", 0) + count
    if total:
        fields["events"] = total
    if anonymous > 0:
        fields["anonymous"] = anonymous
    return fields


@dataclass(frozen=True, slots=True)
class LiveRecord:
    """Events to add to the live counters: stored ones counted by type, anonymously counted
    ones, and the session they came from (None without analytics consent)."""

    neuron_id: int
    event_types: Mapping[str, int]
    session_key: str | None = None
    anonymous: int = 0


def live_record_events(
    *,
    neuron_id: int,
    event_types: Mapping[str, int],
    session_key: str | None = None,
    anonymous: int = 0,
    at: datetime | None = None,
) -> None:
    """Add stored events (counted by type) and anonymously counted ones to this minute's
    counters of the neuron and of all neurons. `session_key` feeds the active-session
    estimate; pass None for visitors without analytics consent. Never raises."""
    live_record_many([LiveRecord(neuron_id, event_types, session_key, anonymous)], at=at)


# Scope (a neuron id or ALL) -> (counter increments, session keys).
Merged = dict[str | int, tuple[dict[str, int], set[str]]]


def _merge_into(merged: Merged, scope: str | int, totals: Mapping[str, int], session_keys: Iterable[str]) -> None:
    into, keys = merged.setdefault(scope, ({}, set()))
    for name, value in totals.items():
        into[name] = into.get(name, 0) + value
    keys.update(session_keys)


def live_record_many(records: Iterable[LiveRecord], *, at: datetime | None = None) -> None:
    """live_record_events for several records at once: their increments are summed per
    neuron and minute until the next publication. Never raises; a record with bad
    increments is left out."""
    merged: Merged = {}
    for record in records:
        try:
            fields = _fields(record.event_types, record.anonymous)
        except Exception:  # a caller's bug must not fail ingestion either, nor pass for an outage
            logger.exception("live counters: bad increments ignored")
            continue
        if not fields:
            continue
        for scope in (record.neuron_id, ALL):
            _merge_into(merged, scope, fields, [record.session_key] if record.session_key else [])
    if not merged or not _available():
        return
    minute = _minute(at or timezone.now())
    if settings.LIVE_COUNTER_FLUSH_SECONDS <= 0:
        _publish({minute: merged})
        return
    _PENDING.add(minute, merged)


class _Pending:
    """This process's increments not yet published, and the timer that will publish them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._minutes: dict[int, Merged] = {}
        self._timer: threading.Timer | None = None

    def add(self, minute: int, merged: Merged) -> None:
        with self._lock:
            into = self._minutes.setdefault(minute, {})
            for scope, (totals, session_keys) in merged.items():
                _merge_into(into, scope, totals, session_keys)
            if self._timer is None:
                self._timer = threading.Timer(settings.LIVE_COUNTER_FLUSH_SECONDS, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def take(self) -> dict[int, Merged]:
        with self._lock:
            minutes, self._minutes = self._minutes, {}
            if self._timer is not None:
                self._timer.cancel()  # a no-op when called from the timer itself
                self._timer = None
            return minutes

    def flush(self) -> None:
        minutes = self.take()
        if minutes and _available():
            _publish(minutes)

    def reset_after_fork(self) -> None:
        # The child owns no timer and must not publish the parent's increments twice.
        self._lock = threading.Lock()
        self._minutes = {}
        self._timer = None


_PENDING = _Pending()
atexit.register(_PENDING.flush)
os.register_at_fork(after_in_child=_PENDING.reset_after_fork)


def live_flush() -> None:
    """Publish this process's pending increments now (the timer does it otherwise). Never raises."""
    _PENDING.flush()


def live_discard_pending() -> None:
    """Drop this process's unpublished increments (tests: nothing leaks into the next one)."""
    _PENDING.take()


def _publish(minutes: dict[int, Merged]) -> None:
    """One pipelined round trip for every minute and scope; on failure, back off (best-effort
    by contract: the events are already committed)."""
    try:
        ttl = settings.LIVE_COUNTER_TTL_SECONDS
        if settings.REDIS_URL:
            pipe = _redis().pipeline(transaction=False)
            for minute, merged in minutes.items():
                for scope, (totals, session_keys) in merged.items():
                    counters, sessions = _keys(scope, minute)
                    for name, value in totals.items():
                        pipe.hincrby(counters, name, value)
                    pipe.expire(counters, ttl)
                    if session_keys:
                        pipe.pfadd(sessions, *session_keys)
                        pipe.expire(sessions, ttl)
            pipe.execute()
        else:
            for minute, merged in minutes.items():
                _local_record(merged, minute, ttl)
    except Exception as exc:
        _mark_down(exc)


_local_lock = threading.Lock()


def _local_record(merged: Merged, minute: int, ttl: int) -> None:
    with _local_lock:
        for scope, (totals, session_keys) in merged.items():
            counters, sessions = _keys(scope, minute)
            current = cache.get(counters) or {}
            for name, value in totals.items():
                current[name] = current.get(name, 0) + value
            cache.set(counters, current, ttl)
            if session_keys:
                members = cache.get(sessions) or set()
                members.update(session_keys)
                cache.set(sessions, members, ttl)


def _decode(raw: Mapping[Any, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in raw.items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        out[name] = int(value)
    return out


def live_snapshot(*, neuron_id: int | None = None, window_minutes: int = 5, series_minutes: int = 30) -> dict:
    """Counters for the dashboard: totals over the last `window_minutes` (this minute
    included), events per type, an estimate of active sessions, and a per-minute series.

    `available` is False when the cache could not be read; the numbers are then zeros.
    """
    _PENDING.flush()  # this process's own increments are seen at once
    scope: str | int = neuron_id if neuron_id is not None else ALL
    now_minute = _minute(timezone.now())
    span = max(window_minutes, series_minutes)
    minutes = [now_minute - offset for offset in range(span - 1, -1, -1)]
    per_minute: list[dict[str, int]] = []
    active = 0
    available = _available()
    if available:
        try:
            window_session_keys = [_keys(scope, m)[1] for m in minutes[-window_minutes:]]
            if settings.REDIS_URL:
                pipe = _redis().pipeline(transaction=False)
                for m in minutes:
                    pipe.hgetall(_keys(scope, m)[0])
                pipe.pfcount(*window_session_keys)
                results = pipe.execute()
                per_minute = [_decode(r) for r in results[:-1]]
                active = int(results[-1])
            else:
                found = cache.get_many([_keys(scope, m)[0] for m in minutes])
                per_minute = [dict(found.get(_keys(scope, m)[0]) or {}) for m in minutes]
                members: set[str] = set()
                for value in cache.get_many(window_session_keys).values():
                    members |= value
                active = len(members)
        except Exception as exc:  # the dashboard shows "unavailable" rather than failing
            _mark_down(exc)
            available = False
    if not per_minute:
        per_minute = [{} for _ in minutes]

    window = per_minute[-window_minutes:]
    totals = {name: sum(bucket.get(name, 0) for bucket in window) for name in SUMMARY_FIELDS}
    by_type: dict[str, int] = {}
    for bucket in window:
        for name, value in bucket.items():
            if name.startswith("type:"):
                by_type[name[5:]] = by_type.get(name[5:], 0) + value
    return {
        "available": available,
        "neuronId": neuron_id,
        "windowMinutes": window_minutes,
        **totals,
        "activeSessions": active,
        "byType": by_type,
        "perMinute": [
            {
                "minute": datetime.fromtimestamp(m * 60, tz=UTC).isoformat(),
                "events": bucket.get("events", 0),
                "pageViews": bucket.get("pageViews", 0),
                "anonymous": bucket.get("anonymous", 0),
            }
            for m, bucket in zip(minutes[-series_minutes:], per_minute[-series_minutes:], strict=True)
        ],
    }


def _seen_key(neuron_id: int, message_id: str) -> str:
    # A keyed hash: the cache holds no message id, only proof that one was seen.
    digest = hmac.new(settings.SECRET_KEY.encode(), f"{neuron_id}:{message_id}".encode(), hashlib.sha256)
    return f"{_prefix()}:seen:{digest.hexdigest()[:32]}"


def anonymous_first_seen(*, neuron_id: int, message_ids: list[str]) -> set[str] | None:
    """Of these message ids of anonymously counted events, those not seen in the last
    ANONYMOUS_DEDUPE_SECONDS, marked as seen now; a resend of anonymous events is then
    not counted twice. One pipelined round trip of SET NX with Redis.

    Best-effort like the live counters: None when the cache cannot answer (every event is
    then counted, as before deduplication existed), and never raises. The marks are set
    before the counts commit: should that transaction fail, a resend within the window
    is not counted (an undercount by the failed request, never a double count).
    """
    if not message_ids or not _available():
        return None
    ttl = settings.ANONYMOUS_DEDUPE_SECONDS
    keys = [_seen_key(neuron_id, message_id) for message_id in message_ids]
    try:
        if settings.REDIS_URL:
            pipe = _redis().pipeline(transaction=False)
            for key in keys:
                pipe.set(key, b"1", nx=True, ex=ttl)
            fresh = pipe.execute()
        else:
            fresh = [cache.add(key, 1, ttl) for key in keys]
    except Exception as exc:
        _mark_down(exc)
        return None
    return {message_id for message_id, new in zip(message_ids, fresh, strict=True) if new}
