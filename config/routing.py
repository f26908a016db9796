"""Websocket routes; each app with a consumer adds its patterns here."""

from analytics.routing import websocket_urlpatterns as analytics_websockets

websocket_urlpatterns: list = [*analytics_websockets]
