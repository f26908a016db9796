"""Offline evaluation of the recommender: hit rate @10, ours against popularity alone.

A synthetic catalogue with planted taste groups: each visitor belongs to one
group and browses mostly that group's items (skewed within the group), plus
some globally popular "blockbusters". Groups differ in size, so global
popularity favours the big groups and the blockbusters — the situation in which
popularity is a strong baseline for many visitors and a poor one for the rest.

Leave-last-out: each visitor's last new item is held out; co-occurrence is
learned from everything else (personalization.recommend.cooccurrence_build, the
code the Celery job runs) and each visitor gets 10 recommendations from their
remaining history (personalization.recommend.recommend, the code the API runs),
seen items excluded. The baseline recommends the 10 most popular unseen items.
A hit is the held-out item among the 10.

    python bench/recommend_eval.py [--visitors 3000] [--groups 8] [--seed 7]

Pure Python and deterministic for a seed; no database or server needed.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from personalization.recommend import cooccurrence_build, recommend  # noqa: E402

K = 10


def catalogue(*, groups: int, items_per_group: int, blockbusters: int) -> tuple[list[list[str]], list[str]]:
    by_group = [[f"g{g}-i{i}" for i in range(items_per_group)] for g in range(groups)]
    return by_group, [f"hit-{i}" for i in range(blockbusters)]


def zipf_pick(rng: random.Random, items: list[str], s: float = 1.1) -> str:
    weights = [1.0 / (rank + 1) ** s for rank in range(len(items))]
    return rng.choices(items, weights=weights, k=1)[0]


def histories(
    *, visitors: int, by_group: list[list[str]], blockbusters: list[str], in_group: float, seed: int
) -> list[list[str]]:
    rng = random.Random(seed)
    # Group sizes skewed 1 : 1/2 : 1/3 ...: the biggest group dominates global popularity.
    group_weights = [1.0 / (g + 1) for g in range(len(by_group))]
    out = []
    for _ in range(visitors):
        group = rng.choices(range(len(by_group)), weights=group_weights, k=1)[0]
        length = rng.randint(6, 18)
        seen: list[str] = []
        while len(seen) < length:
            item = zipf_pick(rng, by_group[group]) if rng.random() < in_group else zipf_pick(rng, blockbusters)
            if item not in seen:
                seen.append(item)
        out.append(seen)
    return out


def evaluate(all_histories: list[list[str]]) -> dict[str, float]:
    train = [h[:-1] for h in all_histories]
    held_out = [h[-1] for h in all_histories]
    started = time.perf_counter()
    neighbours, visitors = cooccurrence_build(train)
    build_seconds = time.perf_counter() - started
    popular = [item for item, _ in sorted(visitors.items(), key=lambda kv: (-kv[1], kv[0]))]

    ours = baseline = 0
    from_cooccurrence = 0
    started = time.perf_counter()
    for history, target in zip(train, held_out, strict=True):
        recs = recommend(history=history, neighbours=neighbours, popular=popular[: K + len(history)], limit=K)
        from_cooccurrence += sum(1 for r in recs if r.reason == "together")
        ours += target in {r.item for r in recs}
    recommend_seconds = time.perf_counter() - started
    seen_sets = [set(h) for h in train]
    for seen, target in zip(seen_sets, held_out, strict=True):
        top = [item for item in popular if item not in seen][:K]
        baseline += target in top
    n = len(all_histories)
    return {
        "visitors": n,
        "items": len(visitors),
        "ours": ours / n,
        "popularity": baseline / n,
        "cooccurrence_share": from_cooccurrence / (n * K),
        "build_seconds": build_seconds,
        "recommend_ms": 1000 * recommend_seconds / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=3000)
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--items-per-group", type=int, default=60)
    parser.add_argument("--blockbusters", type=int, default=30)
    parser.add_argument("--in-group", type=float, default=0.8, help="share of a visitor's views inside their group")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    by_group, hits = catalogue(groups=args.groups, items_per_group=args.items_per_group, blockbusters=args.blockbusters)
    data = histories(
        visitors=args.visitors, by_group=by_group, blockbusters=hits, in_group=args.in_group, seed=args.seed
    )
    lengths = Counter(len(h) for h in data)
    result = evaluate(data)
    print(
        f"catalogue: {args.groups} taste groups x {args.items_per_group} items + {args.blockbusters} blockbusters; "
        f"{result['visitors']} visitors, {sum(k * v for k, v in lengths.items())} views, "
        f"{result['items']} items seen; {args.in_group:.0%} of views inside the visitor's group; seed {args.seed}"
    )
    print(f"hit rate @{K}, co-occurrence + popularity fallback (ours): {result['ours']:.3f}")
    print(f"hit rate @{K}, popularity alone (baseline):               {result['popularity']:.3f}")
    margin = result["ours"] - result["popularity"]
    ratio = result["ours"] / result["popularity"] if result["popularity"] else float("inf")
    print(f"margin: {margin * 100:+.1f} points ({ratio:.2f}x the baseline)")
    print(
        f"{result['cooccurrence_share']:.0%} of recommended slots came from co-occurrence; "
        f"learning took {result['build_seconds']:.2f} s, recommending {result['recommend_ms']:.3f} ms per visitor "
        "(shared 2-core machine)"
    )


if __name__ == "__main__":
    main()
