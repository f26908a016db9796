"""Per process: the payloads of SequenceDay rows, kept while their row version is unchanged.

A closed day's row changes only when the jobs rebuild it or a deletion blanks it, and each
change writes a new version of the row. On PostgreSQL a row version is named by its xmin
(the writing transaction) and ctid (its place in the table): a report lists the day rows it
needs with that name, a few bytes each, and fetches the payloads of only the rows this
process does not hold in that version. Without it, every funnel and journeys report moved
about 20 MB per site and 30 days over the connection.

Bounded by ANALYTICS_SEQUENCE_DAY_CACHE_BYTES per process (the least recently used rows go
first); 0 turns it off.

DAY_RESULT_CACHE keeps, per report shape (a funnel's steps and window, a journey's page,
the range and filters), what the report computed from those rows: the funnel's sorted
stream and per-visitor reach, the journey's per-session trails. It is keyed on the rows'
versions as well, so a rebuilt or blanked day makes a new key; the sessions since the
days' watermark and the open ones are read and matched on every report, and merged in
(analytics.sequences: visitors and sessions are matched on their own). Bounded by
ANALYTICS_SEQUENCE_RESULT_CACHE_BYTES; 0 turns it off.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings

from analytics.lru import SizedLRU


@dataclass(frozen=True, slots=True)
class DayPayload:
    headers: bytes
    events: bytes
    labels: dict[str, Any]

    @property
    def size(self) -> int:
        return len(self.headers) + len(self.events)


class DayCache(SizedLRU):
    """Payloads by SequenceDay pk, each under the row version it was read in; sized in bytes."""

    def __init__(self) -> None:
        super().__init__(lambda: settings.ANALYTICS_SEQUENCE_DAY_CACHE_BYTES)

    def get(self, pk: int, version: str) -> DayPayload | None:
        entry = self.lookup(pk, lambda held: held[0] == version)
        return entry[1] if entry is not None else None

    def put(self, pk: int, version: str, payload: DayPayload) -> None:
        self.store(pk, (version, payload), payload.size)


DAY_CACHE = DayCache()


T = TypeVar("T")


class DayResultCache(SizedLRU):
    """What reports computed from closed days' rows, by a key naming the rows' versions and the
    report's terms; sized in bytes."""

    def __init__(self) -> None:
        super().__init__(lambda: settings.ANALYTICS_SEQUENCE_RESULT_CACHE_BYTES)

    def get_or_compute(self, key: Hashable | None, compute: Callable[[], T], size: Callable[[T], int]) -> T:
        """The value under `key`, or compute() stored under it (not stored when `key` is None).
        Values are shared between requests: read only."""
        if key is None or self.limit() <= 0:
            return compute()
        value = self.lookup(key)
        if value is None:
            value = compute()
            self.store(key, value, max(size(value), 1))
        return value


DAY_RESULT_CACHE = DayResultCache()
