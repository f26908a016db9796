"""One ticker for the live dashboard: a snapshot every DASHBOARD_TICK_SECONDS, broadcast to a group.

Every server process that holds dashboard connections runs a ticker task, but
only the one holding a short cache lease computes and broadcasts: with
channels-redis the group send reaches the dashboards of every process, so each
client gets one snapshot per tick and the counters are read once per tick, not
once per client. If the leader dies its lease expires and another process takes
over within DASHBOARD_TICK_LEASE_SECONDS.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from sessions_app.live import live_snapshot
from sessions_app.models import BehaviorEvent

logger = logging.getLogger(__name__)

GROUP = "dashboard"
LEASE_KEY = "dashboard:ticker:lease"
RECENT_EVENTS = 15


def dashboard_snapshot(*, after_event_id: int | None) -> tuple[dict[str, Any], int | None]:
    """The live counters plus the events stored since the previous tick (newest first).

    The recent-events read walks the primary key from the last id seen, so its cost
    is the handful of new rows, whatever the table's size.
    """
    snapshot = live_snapshot()
    events = BehaviorEvent.objects.select_related("neuron").order_by("-id")
    if after_event_id is not None:
        events = events.filter(id__gt=after_event_id)
    recent = list(
        events.values_list("id", "event_type", "event_name", "page_path", "neuron__slug", "timestamp")[:RECENT_EVENTS]
    )
    last_id = recent[0][0] if recent else after_event_id
    snapshot["recentEvents"] = [
        {
            "id": event_id,
            "type": event_type,
            "name": name,
            "path": path,
            "neuron": neuron,
            "timestamp": timestamp.isoformat(),
        }
        for event_id, event_type, name, path, neuron, timestamp in recent
    ]
    snapshot["generatedAt"] = timezone.now().isoformat()
    return snapshot, last_id


class Ticker:
    """The per-process ticker task; runs while this process has dashboard connections."""

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex
        self.connections = 0
        self.task: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.last_event_id: int | None = None
        self.ticks = 0

    def attach(self) -> None:
        loop = asyncio.get_running_loop()
        if self.loop is not loop:
            # A new event loop (a restarted server thread, or a test's loop) owns no connection yet.
            self.loop, self.connections, self.task = loop, 0, None
        self.connections += 1
        if self.task is None or self.task.done():
            self.task = loop.create_task(self.run())

    def detach(self) -> None:
        self.connections = max(0, self.connections - 1)

    def _hold_lease(self) -> bool:
        lease = settings.DASHBOARD_TICK_LEASE_SECONDS
        if cache.add(LEASE_KEY, self.token, timeout=lease):
            return True
        if cache.get(LEASE_KEY) == self.token:
            cache.touch(LEASE_KEY, timeout=lease)
            return True
        return False

    def _release(self) -> None:
        if cache.get(LEASE_KEY) == self.token:
            cache.delete(LEASE_KEY)

    def _compute(self) -> dict[str, Any] | None:
        if not self._hold_lease():
            return None
        if self.last_event_id is None:
            # First tick of this leader: start the feed from the newest stored event.
            self.last_event_id = BehaviorEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
        snapshot, self.last_event_id = dashboard_snapshot(after_event_id=self.last_event_id)
        return snapshot

    async def run(self) -> None:
        layer = get_channel_layer()
        loop = asyncio.get_running_loop()
        interval = settings.DASHBOARD_TICK_SECONDS
        try:
            while self.connections > 0:
                started = loop.time()
                try:
                    snapshot = await database_sync_to_async(self._compute)()
                    if snapshot is not None:
                        self.ticks += 1
                        await layer.group_send(GROUP, {"type": "dashboard.snapshot", "snapshot": snapshot})
                except Exception:  # a Redis or database hiccup skips one tick, never the loop
                    logger.exception("dashboard tick failed")
                await asyncio.sleep(max(0.05, interval - (loop.time() - started)))
        finally:
            try:
                await database_sync_to_async(self._release)()
            except Exception:
                logger.warning("could not release the dashboard ticker lease", exc_info=True)
            self.last_event_id = None


ticker = Ticker()
