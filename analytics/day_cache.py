"""Per process: the payloads of SequenceDay rows, kept while their row version is unchanged.

A closed day's row changes only when the jobs rebuild it or a deletion blanks it, and each
change writes a new version of the row. On PostgreSQL a row version is named by its xmin
(the writing transaction) and ctid (its place in the table): a report lists the day rows it
needs with that name, a few bytes each, and fetches the payloads of only the rows this
process does not hold in that version. Without it, every funnel and journeys report moved
about 20 MB per site and 30 days over the connection.

Bounded by ANALYTICS_SEQUENCE_DAY_CACHE_BYTES per process (the least recently used rows go
first); 0 turns it off.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from django.conf import settings


@dataclass(frozen=True, slots=True)
class DayPayload:
    headers: bytes
    events: bytes
    labels: dict[str, Any]

    @property
    def size(self) -> int:
        return len(self.headers) + len(self.events)


class DayCache:
    def __init__(self) -> None:
        self._rows: OrderedDict[int, tuple[str, DayPayload]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def limit() -> int:
        return settings.ANALYTICS_SEQUENCE_DAY_CACHE_BYTES

    def get(self, pk: int, version: str) -> DayPayload | None:
        with self._lock:
            entry = self._rows.get(pk)
            if entry is None or entry[0] != version:
                self.misses += 1
                return None
            self._rows.move_to_end(pk)
            self.hits += 1
            return entry[1]

    def put(self, pk: int, version: str, payload: DayPayload) -> None:
        limit = self.limit()
        if payload.size > limit:
            return
        with self._lock:
            old = self._rows.pop(pk, None)
            if old is not None:
                self._bytes -= old[1].size
            self._rows[pk] = (version, payload)
            self._bytes += payload.size
            while self._bytes > limit:
                _, (_, evicted) = self._rows.popitem(last=False)
                self._bytes -= evicted.size

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self._bytes = 0
            self.hits = self.misses = 0


DAY_CACHE = DayCache()
