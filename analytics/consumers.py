"""The live dashboard websocket: staff holding the dashboard pages' permission (OPERATOR_PERMISSION),
fed by the ticker's group broadcast."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.auth import get_user_model

from analytics.dashboard_views import OPERATOR_PERMISSION
from analytics.ticker import GROUP, dashboard_snapshot, ticker
from config.api.permissions import is_operator

# Application close codes (4000-4999): the browser shows why it was refused.
CLOSE_FORBIDDEN = 4403


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if not is_operator(user) or not await database_sync_to_async(user.has_perm)(OPERATOR_PERMISSION):
            # Refused before the handshake completes: nothing is ever sent to a non-operator.
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()
        self.attached = True
        ticker.attach()
        # The first numbers straight away, without waiting for the next tick.
        snapshot, _ = await database_sync_to_async(dashboard_snapshot)(after_event_id=None)
        await self.send_json({"type": "snapshot", "data": snapshot})

    async def disconnect(self, code: int) -> None:
        if getattr(self, "attached", False):
            self.attached = False
            ticker.detach()
            await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})
            return
        await self.send_json({"type": "error", "detail": "Unknown message; this socket only sends snapshots."})

    async def dashboard_snapshot(self, event: dict[str, Any]) -> None:
        # Checked again before every snapshot: an operator whose staff status, permission, account
        # or login is taken away stops receiving within a tick, not when they close the page.
        if not await database_sync_to_async(self._still_an_operator)():
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.send_json({"type": "snapshot", "data": event["snapshot"]})

    def _still_an_operator(self) -> bool:
        # Read afresh: a user object caches its permissions.
        user = get_user_model().objects.filter(pk=self.scope["user"].pk, is_active=True, is_staff=True).first()
        if user is None or not user.has_perm(OPERATOR_PERMISSION):
            return False
        session = self.scope.get("session")
        return session is None or session.exists(session.session_key)
