"""Websocket routes; each app with a consumer adds its patterns here."""

websocket_urlpatterns: list = []
