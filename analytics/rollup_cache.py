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

from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
from django.conf import settings

from analytics.lru import SizedLRU

Rows = tuple[dict[str, Any], ...]


class RollupCache(SizedLRU):
    """Rollup sums by query key; sized in result rows (an empty answer counts as one)."""

    def __init__(self) -> None:
        super().__init__(lambda: settings.ANALYTICS_ROLLUP_CACHE_ROWS)

    def get_or_read(self, key: Hashable, read: Callable[[], list[dict[str, Any]]]) -> Rows:
        """The rows stored under `key`, or read() stored under it. Rows are shared: read only."""
        if self.limit() <= 0:
            return tuple(read())
        rows = self.lookup(key)
        if rows is None:
            rows = tuple(read())
            self.store(key, rows, max(len(rows), 1))
        return rows


class VisitorSetCache(SizedLRU):
    """Per report bucket, the union of the closed hours' visitor sets (sorted distinct Visitor
    ids, numpy arrays); sized in bytes. Keyed on the visitor sets' watermark, generation and row."""

    def __init__(self) -> None:
        super().__init__(lambda: settings.ANALYTICS_VISITOR_SET_CACHE_BYTES)

    def get_or_read(self, key: Hashable, read: Callable[[], tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
        if self.limit() <= 0:
            return read()
        sets = self.lookup(key)
        if sets is None:
            sets = read()
            for ids in sets:
                ids.flags.writeable = False  # shared between requests
            self.store(key, sets, max(sum(ids.nbytes for ids in sets), 1))
        return sets


ROLLUP_CACHE = RollupCache()
VISITOR_SET_CACHE = VisitorSetCache()
