"""A per-process map that drops its least recently used entries beyond a size limit."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class SizedLRU:
    """Entries weigh what their owner says (bytes, rows); beyond limit() the least recently
    used go first. An entry heavier than the whole limit is not kept. Thread-safe.

    `limit` is asked on every store, so a setting changed at run time (tests) takes effect."""

    def __init__(self, limit: Callable[[], int]) -> None:
        self.limit = limit
        self._entries: OrderedDict[Hashable, tuple[int, Any]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def lookup(self, key: Hashable, valid: Callable[[Any], bool] | None = None) -> Any | None:
        """The value under `key` (None if absent, or if `valid` rejects it), now the most recently used."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or (valid is not None and not valid(entry[1])):
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def store(self, key: Hashable, value: Any, size: int) -> None:
        limit = self.limit()
        if size > limit:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= old[0]
            self._entries[key] = (size, value)
            self._size += size
            while self._size > limit:
                _, (evicted, _) = self._entries.popitem(last=False)
                self._size -= evicted

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._size = 0
            self.hits = self.misses = 0
