"""Rate limits counted in Redis with one round trip per request.

DRF's ScopedRateThrottle keeps a list of request times per client in the cache: a read
and a write (two Redis round trips) and a pickled list that grows with the rate. Session
creation is throttled on every call, so with Redis the count is kept the way Redis is
good at: INCR and EXPIRE of this window's counter and a GET of the previous window's,
pipelined (one round trip), and the sliding-window estimate

    previous × (1 − elapsed fraction of this window) + current

is compared with the limit (the sliding-window approximation Cloudflare describes: it
assumes the previous window's requests were spread evenly). A refused request is taken off again, so hammering does
not extend the block (as in DRF). Without Redis (the embedded default) DRF's own
throttle runs unchanged. A Redis failure lets the request through (the limit protects
the service; it must not take it down) and skips Redis for a few seconds.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from django.conf import settings
from rest_framework.throttling import ScopedRateThrottle

from config.redis_clients import redis_client, redis_client_forget

logger = logging.getLogger(__name__)

_down_until = 0.0
_lock = threading.Lock()
BACKOFF_SECONDS = 5.0


def _redis() -> Any:
    return redis_client("throttle", socket_connect_timeout=0.5, socket_timeout=0.5)


def throttle_reset() -> None:
    """Forget the client and any recorded outage (tests, settings changes)."""
    global _down_until
    redis_client_forget("throttle")
    with _lock:
        _down_until = 0.0


class CountingRateThrottle(ScopedRateThrottle):
    """ScopedRateThrottle (same scopes, rates and client address) counted in Redis."""

    def allow_request(self, request: Any, view: Any) -> bool:
        if not settings.REDIS_URL:
            return super().allow_request(request, view)
        self.scope = getattr(view, self.scope_attr, None)
        if not self.scope:
            return True
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        key = self.get_cache_key(request, view) if self.rate else None
        if key is None or time.monotonic() < _down_until:
            return True
        now = self.timer()
        window = int(now // self.duration)
        elapsed = (now % self.duration) / self.duration
        prefix = f"{settings.CACHES['default'].get('KEY_PREFIX') or 'spe'}:rl:{key}"
        current_key = f"{prefix}:{window}"
        try:
            pipe = _redis().pipeline(transaction=False)
            pipe.incr(current_key)
            pipe.expire(current_key, 2 * self.duration)
            pipe.get(f"{prefix}:{window - 1}")
            current, _, previous = pipe.execute()
        except Exception as exc:
            self._mark_down(exc)
            return True
        previous = int(previous or 0)
        if previous * (1 - elapsed) + current <= self.num_requests:
            return True
        self._retry_after = self._seconds_until_allowed(previous, current - 1, now)
        try:
            _redis().decr(current_key)
        except Exception as exc:
            self._mark_down(exc)
        return False

    def _seconds_until_allowed(self, previous: int, current: int, now: float) -> float:
        """When one more request fits: solve previous·(1 − e) + current + 1 ≤ limit for e
        in this window, else in the next one (where this window's count is the previous)."""
        start = (now // self.duration) * self.duration
        room = self.num_requests - current - 1
        if room >= 0 and previous > 0:
            fraction = max(0.0, 1 - room / previous)
            return max(1.0, start + fraction * self.duration - now)
        if current > 0:
            fraction = max(0.0, 1 - (self.num_requests - 1) / current)
            return max(1.0, start + self.duration + fraction * self.duration - now)
        return max(1.0, start + self.duration - now)

    def wait(self) -> float | None:
        if not settings.REDIS_URL:
            return super().wait()
        return math.ceil(getattr(self, "_retry_after", self.duration))

    @staticmethod
    def _mark_down(exc: Exception) -> None:
        global _down_until
        with _lock:
            if time.monotonic() >= _down_until:
                logger.warning("rate limits unavailable (%s): letting requests through", exc.__class__.__name__)
            _down_until = time.monotonic() + BACKOFF_SECONDS
