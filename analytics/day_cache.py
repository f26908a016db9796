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

from dataclasses import dataclass
from typing import Any

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
