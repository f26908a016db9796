"""Per process: the sums a report read from the rollup tables, kept while those tables are unchanged.

Rollup rows cover closed periods only and change only when the jobs rebuild periods
(analytics.services: a run of the rollups, a reconcile). Every such rebuild adds one to
its granularity's `RollupWatermark.generation` in the same transaction, and read_counts
reads the watermarks, generations included, once per report anyway. Sums are kept under
a key holding the watermarks and generations as well as the query's own terms, so a
rebuilt period, a moved watermark or a new site makes a new key: an entry is never
served after the rows it was summed from changed; it is only no longer asked for, and
falls out as the least recently used. The open hours are read raw on every report, as
before.

Bounded by ANALYTICS_ROLLUP_CACHE_ROWS result rows per process; 0 turns it off.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from django.conf import settings

Rows = tuple[dict[str, Any], ...]


class RollupCache:
    def __init__(self) -> None:
        self._entries: OrderedDict[Hashable, Rows] = OrderedDict()
        self._rows = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def limit() -> int:
        return settings.ANALYTICS_ROLLUP_CACHE_ROWS

    def get_or_read(self, key: Hashable, read: Callable[[], list[dict[str, Any]]]) -> Rows:
        """The rows stored under `key`, or read() stored under it. Rows are shared: read only."""
        limit = self.limit()
        if limit <= 0:
            return tuple(read())
        with self._lock:
            rows = self._entries.get(key)
            if rows is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return rows
            self.misses += 1
        rows = tuple(read())
        # An entry counts at least one row, so a bound on rows bounds the entries too.
        size = max(len(rows), 1)
        if size > limit:
            return rows
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._rows -= max(len(old), 1)
            self._entries[key] = rows
            self._rows += size
            while self._rows > limit:
                _, evicted = self._entries.popitem(last=False)
                self._rows -= max(len(evicted), 1)
        return rows

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._rows = 0
            self.hits = self.misses = 0


ROLLUP_CACHE = RollupCache()
