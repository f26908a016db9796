"""Keep a server process's long-lived objects out of Python's garbage collector.

A full collection walks every object the process tracks: in a server that is all of
Django, the apps and what the first requests build (URL resolvers, the static file index,
serializers), ~170,000 objects, and a full collection held the GIL for ~120 ms every
~1,500 requests, stalling every request in flight (the tail of session creation at 200
requests/s). Freezing moves the objects alive at that moment to a generation the
collector never visits: once after the app is imported, and once more when the first
requests have built the rest, after which a full collection takes a few milliseconds.
"""

from __future__ import annotations

import gc
import os
import threading

FREEZE_AFTER_REQUESTS = int(os.environ.get("GC_FREEZE_AFTER_REQUESTS", "200"))


def gc_freeze() -> None:
    """Collect what is garbage now, then freeze everything still alive."""
    gc.collect()
    gc.freeze()


class FreezeAfterWarmUp:
    """Counts finished requests and freezes once, after `after` of them."""

    def __init__(self, after: int = FREEZE_AFTER_REQUESTS) -> None:
        self.after = after
        self.count = 0
        self.frozen = False
        self._lock = threading.Lock()

    def request_finished(self) -> None:
        if self.frozen:
            return
        with self._lock:
            self.count += 1
            if self.count < self.after or self.frozen:
                return
            self.frozen = True
        gc_freeze()


class FreezeAfterWarmUpASGI:
    """ASGI wrapper: the HTTP app, frozen out of the collector after its first requests."""

    def __init__(self, app, after: int = FREEZE_AFTER_REQUESTS) -> None:
        self.app = app
        self.warm_up = FreezeAfterWarmUp(after)

    async def __call__(self, scope, receive, send):
        try:
            await self.app(scope, receive, send)
        finally:
            self.warm_up.request_finished()
