"""Item-to-item co-occurrence recommendations (pure functions, shared by the job and bench/).

Learning: each visitor's set of distinct items (their most recent
MAX_ITEMS_PER_VISITOR) counts one co-occurrence for every pair in it; the score
of a pair is together(a, b) / √(visitors(a) · visitors(b)) (cosine of the two
items' visitor sets), so a blockbuster does not become everyone's neighbour.

Recommending: the neighbours of the visitor's recent items are summed, each
item's contribution weighted by its recency (RECENCY_DECAY per step back), items
already seen are excluded, and popularity fills whatever is left.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from personalization.interests import PURCHASE_EVENT_NAMES

MAX_ITEMS_PER_VISITOR = 50
NEIGHBOURS_PER_ITEM = 30
RECENT_ITEMS = 10
RECENCY_DECAY = 0.8
ITEM_KEYS = ("itemId", "item_id", "productId", "product_id", "sku")
ITEM_MAX_LENGTH = 128
PURCHASE_EVENT_TYPES = frozenset({"conversion", "purchase"})


@dataclass(frozen=True)
class Neighbour:
    item: str
    score: float
    together: int


@dataclass(frozen=True)
class Recommendation:
    item: str
    score: float
    reason: str  # "together" | "popular"
    because: str | None = None  # the seen item that contributed most


def _item_id(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text[:ITEM_MAX_LENGTH] or None


def event_items(*, event_type: str, event_name: str, properties: Any) -> tuple[bool, list[str]]:
    """(is a purchase, item ids) of one event: `itemId`/`productId`/`sku` or a `products` list."""
    props = properties if isinstance(properties, dict) else {}
    items: list[str] = []
    for key in ITEM_KEYS:
        item = _item_id(props.get(key))
        if item:
            items.append(item)
            break
    products = props.get("products")
    if isinstance(products, list):
        for product in products[:100]:
            if isinstance(product, dict):
                item = next((_item_id(product.get(key)) for key in ITEM_KEYS if _item_id(product.get(key))), None)
                if item:
                    items.append(item)
    purchase = event_type in PURCHASE_EVENT_TYPES or (event_name or "").strip().lower() in PURCHASE_EVENT_NAMES
    return purchase, list(dict.fromkeys(items))


def cooccurrence_build(
    histories: Iterable[Sequence[str]], *, neighbours_per_item: int = NEIGHBOURS_PER_ITEM
) -> tuple[dict[str, list[Neighbour]], Counter[str]]:
    """({item: best neighbours by score}, {item: visitors}) from visitors' item histories (oldest first)."""
    visitors: Counter[str] = Counter()
    together: dict[str, Counter[str]] = defaultdict(Counter)
    for history in histories:
        items = list(dict.fromkeys(reversed(history)))[:MAX_ITEMS_PER_VISITOR]  # most recent distinct
        visitors.update(items)
        for i, a in enumerate(items):
            for b in items[i + 1 :]:
                together[a][b] += 1
                together[b][a] += 1
    neighbours: dict[str, list[Neighbour]] = {}
    for item, counts in together.items():
        scored = (Neighbour(other, n / math.sqrt(visitors[item] * visitors[other]), n) for other, n in counts.items())
        neighbours[item] = heapq.nlargest(neighbours_per_item, scored, key=lambda nb: (nb.score, nb.together, nb.item))
    return neighbours, visitors


def recommend(
    *,
    history: Sequence[str],
    neighbours: Mapping[str, Sequence[Neighbour]],
    popular: Sequence[str],
    limit: int,
    exclude: Iterable[str] = (),
) -> list[Recommendation]:
    """Up to `limit` unseen items: co-occurrence with the recent history first, then popularity."""
    seen = set(history) | set(exclude)
    recent = list(dict.fromkeys(reversed(history)))[:RECENT_ITEMS]
    scores: dict[str, float] = defaultdict(float)
    best_source: dict[str, tuple[float, str]] = {}
    for rank, source in enumerate(recent):
        weight = RECENCY_DECAY**rank
        for nb in neighbours.get(source, ()):
            if nb.item in seen:
                continue
            contribution = weight * nb.score
            scores[nb.item] += contribution
            if contribution > best_source.get(nb.item, (0.0, ""))[0]:
                best_source[nb.item] = (contribution, source)
    ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:limit]
    out = [Recommendation(item, round(score, 6), "together", best_source[item][1]) for item, score in ranked]
    chosen = seen | {r.item for r in out}
    for item in popular:
        if len(out) >= limit:
            break
        if item not in chosen:
            out.append(Recommendation(item, 0.0, "popular"))
            chosen.add(item)
    return out
