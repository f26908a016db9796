"""Pure algorithms over event streams: funnels, retention cohorts, journeys.

No database here: the selectors feed them rows, the property tests feed them
generated streams and compare with brute force.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import median

OTHER = "(other)"
EXIT = "(exit)"
ENTRANCE = "(entrance)"


def funnel_match(matches: Sequence[tuple[float, frozenset[int]]], n_steps: int, window: float) -> list[float]:
    """Times at which one visitor reached each funnel step, as far as they got.

    `matches`: the visitor's events in order, each as (time in seconds, the step
    indices it matches). A visitor reaches step k when events at increasing
    positions match steps 0..k in order, the last within `window` seconds of the
    first. Every occurrence of step 0 is tried as a start; from a start, taking
    the earliest event for each next step is optimal (any later choice can only
    reach fewer steps inside the window). The earliest start reaching the
    deepest step wins, which fixes the reported times.
    """
    best: list[float] = []
    for i, (t0, steps0) in enumerate(matches):
        if 0 not in steps0:
            continue
        times = [t0]
        for t, steps in matches[i + 1 :]:
            if len(times) == n_steps or t - t0 > window:
                break
            if len(times) in steps:
                times.append(t)
        if len(times) > len(best):
            best = times
            if len(best) == n_steps:
                break
    return best


@dataclass(frozen=True)
class FunnelStepResult:
    entrants: int
    drop_off: int
    conversion_from_start: float
    conversion_from_previous: float
    median_seconds_from_previous: float | None


def funnel_summarise(reached: Iterable[list[float]], n_steps: int) -> list[FunnelStepResult]:
    entrants = [0] * n_steps
    gaps: list[list[float]] = [[] for _ in range(n_steps)]
    for times in reached:
        for k, t in enumerate(times):
            entrants[k] += 1
            if k:
                gaps[k].append(t - times[k - 1])
    out = []
    for k in range(n_steps):
        prev = entrants[k - 1] if k else entrants[0]
        out.append(
            FunnelStepResult(
                entrants=entrants[k],
                drop_off=(prev - entrants[k]) if k else 0,
                conversion_from_start=(entrants[k] / entrants[0]) if entrants[0] else 0.0,
                conversion_from_previous=(entrants[k] / prev) if prev else 0.0,
                median_seconds_from_previous=float(median(gaps[k])) if gaps[k] else None,
            )
        )
    return out


def retention_matrix(visits: Iterable[tuple[object, int]], n_cohorts: int, n_offsets: int) -> list[list[int]]:
    """Cohort table from (visitor, period index) pairs.

    A visitor's cohort is the first period they were seen in; only visitors
    whose first period lies in [0, n_cohorts) form cohorts. Cell [c][k] counts
    the visitors of cohort c seen in period c + k, for k in [0, n_offsets).
    Cell [c][0] is the cohort's size.
    """
    seen: dict[object, set[int]] = defaultdict(set)
    for visitor, period in visits:
        seen[visitor].add(period)
    table = [[0] * n_offsets for _ in range(n_cohorts)]
    for periods in seen.values():
        first = min(periods)
        if not 0 <= first < n_cohorts:
            continue
        for p in periods:
            k = p - first
            if 0 <= k < n_offsets:
                table[first][k] += 1
    return table


def _collapse(paths: Sequence[str]) -> list[str]:
    """Consecutive views of one page (reloads) count once."""
    out: list[str] = []
    for p in paths:
        if not out or out[-1] != p:
            out.append(p)
    return out


def journey_graph(
    sessions: Iterable[Sequence[str]], *, page: str, direction: str, depth: int, top: int
) -> dict[str, list[dict]]:
    """Paths after (or before) the first view of `page`, as Sankey nodes and links.

    Level 0 is the page itself; level k the k-th page after it (or before it,
    for direction "previous"). At each level only the `top` most common pages
    keep their name, the rest become "(other)"; a session that stops earlier
    ends in "(exit)" (or starts at "(entrance)").
    """
    end_marker = EXIT if direction == "next" else ENTRANCE
    trails: list[list[str]] = []
    for raw in sessions:
        paths = _collapse(raw)
        if page not in paths:
            continue
        i = paths.index(page)
        if direction == "next":
            steps = paths[i + 1 : i + 1 + depth]
        else:
            steps = list(reversed(paths[max(0, i - depth) : i]))
        if len(steps) < depth:
            steps = [*steps, end_marker]
        trails.append([page, *steps])
    keep: list[set[str]] = [{page}]
    for level in range(1, depth + 1):
        counts = Counter(t[level] for t in trails if len(t) > level and t[level] != end_marker)
        keep.append({p for p, _ in counts.most_common(top)})

    def label(level: int, p: str) -> str:
        return p if p == end_marker or p in keep[level] else OTHER

    nodes: Counter[tuple[int, str]] = Counter()
    links: Counter[tuple[int, str, str]] = Counter()
    for trail in trails:
        labelled = [label(level, p) for level, p in enumerate(trail)]
        for level, p in enumerate(labelled):
            nodes[(level, p)] += 1
            if level and labelled[level - 1] != end_marker:
                links[(level - 1, labelled[level - 1], p)] += 1
    return {
        "nodes": [
            {"id": f"{level}:{p}", "level": level, "page": p, "sessions": n}
            for (level, p), n in sorted(nodes.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1]))
        ],
        "links": [
            {"source": f"{level}:{a}", "target": f"{level + 1}:{b}", "sessions": n}
            for (level, a, b), n in sorted(links.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1], kv[0][2]))
        ],
    }
