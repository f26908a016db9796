"""Interest vectors: which categories an event is about, and exponential-decay arithmetic.

A vector is a map {category: weight} stored together with the time `as_of` at
which those weights are valid. Each event adds its type's weight to each of its
categories; every contribution halves each half-life. Hence

    weight(c, t) = Σ_events amount(e) · 2^(−(t − time(e)) / half-life)

which is independent of the order in which events arrive: an incremental update
and a recomputation from stored events give the same vector, which is what
lets profile vectors follow merges and splits by recomputing.

Pure functions only; the writes are in personalization/services.py.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

# What one event adds to each of its categories. A conversion says more about
# what someone wants than a page view; a click a little more than a view.
EVENT_TYPE_WEIGHTS: dict[str, float] = {
    "page_view": 1.0,
    "page": 1.0,
    "screen": 1.0,
    "click": 1.5,
    "custom": 1.0,
    "track": 1.0,
    "conversion": 3.0,
    "purchase": 3.0,
}
PURCHASE_EVENT_NAMES = frozenset({"order completed", "product purchased", "purchase", "checkout completed"})
DEFAULT_EVENT_WEIGHT = 1.0
# Weights below this carry no information and only bloat the JSON.
NEGLIGIBLE_WEIGHT = 1e-6
CATEGORY_MAX_LENGTH = 64

_SEPARATORS = re.compile(r"[\s_/]+")
_NOT_A_CATEGORY = re.compile(r"^[0-9a-f-]{8,}$|^\d+$")  # ids and numbers in paths are not topics


class EventLike(Protocol):
    """A stored event (BehaviorEvent, or ingestion's StoredEvent). `received_at` is read when present."""

    event_type: str
    event_name: str
    properties: Any
    page_path: str
    timestamp: datetime


@dataclass(frozen=True)
class Contribution:
    category: str
    amount: float
    at: datetime


def category_normalize(raw: Any) -> str | None:
    if not isinstance(raw, str):
        return None
    value = _SEPARATORS.sub("-", raw.strip().lower()).strip("-")[:CATEGORY_MAX_LENGTH]
    return value or None


def event_weight(event: EventLike) -> float:
    if (event.event_name or "").strip().lower() in PURCHASE_EVENT_NAMES:
        return EVENT_TYPE_WEIGHTS["purchase"]
    return EVENT_TYPE_WEIGHTS.get(event.event_type, DEFAULT_EVENT_WEIGHT)


def event_categories(event: EventLike, *, path_rules: Sequence[tuple[str, str]] = ()) -> list[str]:
    """Categories of an event: its `category`/`categories` properties, else the neuron's
    path-prefix mapping (longest prefix first), else the first section of the page path."""
    props = event.properties if isinstance(event.properties, dict) else {}
    explicit: list[Any] = []
    if "category" in props:
        explicit.append(props["category"])
    if isinstance(props.get("categories"), list):
        explicit.extend(props["categories"][:10])
    found = [c for c in (category_normalize(raw) for raw in explicit) if c]
    if found:
        return list(dict.fromkeys(found))
    path = event.page_path or ""
    for prefix, category in path_rules:  # sorted longest first by the caller
        if path.startswith(prefix):
            normalized = category_normalize(category)
            return [normalized] if normalized else []
    section = next((part for part in path.split("/") if part), "")
    normalized = category_normalize(section.split("?")[0])
    if normalized and not _NOT_A_CATEGORY.match(normalized):
        return [normalized]
    return []


def event_time(event: EventLike, *, not_after: datetime | None = None) -> datetime:
    # A client clock ahead of ours must not make an interest grow into the future.
    received = getattr(event, "received_at", None) or not_after
    return min(event.timestamp, received) if received else event.timestamp


def contributions_from_events(
    events: Iterable[EventLike], *, path_rules: Sequence[tuple[str, str]] = (), not_after: datetime | None = None
) -> list[Contribution]:
    out: list[Contribution] = []
    for event in events:
        categories = event_categories(event, path_rules=path_rules)
        if not categories:
            continue
        amount = event_weight(event)
        at = event_time(event, not_after=not_after)
        out.extend(Contribution(category=c, amount=amount, at=at) for c in categories)
    return out


def decay_factor(*, elapsed: timedelta, half_life: timedelta) -> float:
    """2^(−elapsed / half-life); elapsed may be negative (an event older than `as_of` is fine
    the other way round: its contribution is decayed forward to `as_of`)."""
    return 2.0 ** (-(elapsed / half_life))


def weights_at(
    weights: Mapping[str, float], *, as_of: datetime, at: datetime, half_life: timedelta
) -> dict[str, float]:
    """The weights valid at `at` (never grown: a reading before `as_of` reads the stored values)."""
    factor = decay_factor(elapsed=max(at - as_of, timedelta(0)), half_life=half_life)
    return {category: weight * factor for category, weight in weights.items()}


def weights_add(
    weights: Mapping[str, float],
    *,
    as_of: datetime | None,
    contributions: Sequence[Contribution],
    half_life: timedelta,
    max_categories: int,
) -> tuple[dict[str, float], datetime | None]:
    """Add contributions; the result is valid as of the latest of `as_of` and every contribution."""
    if not contributions:
        return dict(weights), as_of
    latest = max(c.at for c in contributions)
    new_as_of = latest if as_of is None else max(as_of, latest)
    out = weights_at(weights, as_of=as_of, at=new_as_of, half_life=half_life) if as_of else dict(weights)
    for c in contributions:
        out[c.category] = out.get(c.category, 0.0) + c.amount * decay_factor(
            elapsed=new_as_of - c.at, half_life=half_life
        )
    return weights_prune(out, max_categories=max_categories), new_as_of


def weights_prune(weights: Mapping[str, float], *, max_categories: int) -> dict[str, float]:
    kept = {c: w for c, w in weights.items() if w >= NEGLIGIBLE_WEIGHT}
    if len(kept) > max_categories:
        kept = dict(heapq.nlargest(max_categories, kept.items(), key=lambda item: (item[1], item[0])))
    return kept


def weights_combine(
    vectors: Iterable[tuple[Mapping[str, float], datetime]], *, half_life: timedelta, max_categories: int
) -> tuple[dict[str, float], datetime | None]:
    """Sum several vectors (each with its own as_of) into one, valid at the latest as_of."""
    items = list(vectors)
    if not items:
        return {}, None
    latest = max(as_of for _, as_of in items)
    out: dict[str, float] = {}
    for weights, as_of in items:
        for category, weight in weights_at(weights, as_of=as_of, at=latest, half_life=half_life).items():
            out[category] = out.get(category, 0.0) + weight
    return weights_prune(out, max_categories=max_categories), latest


def weights_top(weights: Mapping[str, float], n: int) -> list[tuple[str, float]]:
    return heapq.nlargest(n, weights.items(), key=lambda item: (item[1], item[0]))
