"""One Redis client per process and purpose, made under a lock.

A client made by a racing thread would replace the first one, whose connection pool
closes its sockets when it is collected, under the feet of the thread still using it
(seen as uncounted rate-limit hits and AttributeErrors inside redis-py in the live
counters under the first burst of requests). A changed REDIS_URL (tests) makes a new one.
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings

_clients: dict[str, tuple[str, Any]] = {}  # purpose -> (REDIS_URL it was made for, client)
_lock = threading.Lock()


def redis_client(purpose: str, **options: Any) -> Any:
    """The process's client for `purpose` (its own timeouts), connected to REDIS_URL."""
    url = settings.REDIS_URL
    entry = _clients.get(purpose)
    if entry is None or entry[0] != url:
        with _lock:
            entry = _clients.get(purpose)
            if entry is None or entry[0] != url:
                import redis

                entry = (url, redis.Redis.from_url(url, **options))
                _clients[purpose] = entry
    return entry[1]


def redis_client_forget(purpose: str) -> None:
    """Drop the client for `purpose`; the next call makes a new one."""
    with _lock:
        _clients.pop(purpose, None)
