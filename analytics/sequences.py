"""Funnels and journeys over event streams held in arrays (numpy), and the packed format of sequences.

The same definitions as analytics.algorithms (funnel_match, journey_graph), computed
for every visitor or session at once instead of one Python loop iteration per event;
property tests check that both give the same answers.

A stream is a set of parallel arrays sorted by (group, time, event id): `group` is a
visitor (funnels) or a session (journeys), `t` the event time in microseconds since
the epoch, `code` what the event is (a funnel step mask, or a page's index).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from analytics.algorithms import ENTRANCE, EXIT, OTHER

# One event of a packed sequence: time (microseconds since the epoch), event id, Action id.
EVENT_DTYPE = np.dtype([("t", "<i8"), ("id", "<i8"), ("action", "<i4")])
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# One session's header in a SequenceDay: ids, event count, and its filter values as positions in the day's labels.
DAY_HEADER_DTYPE = np.dtype(
    [
        ("session", "<i8"),
        ("visitor", "<i8"),
        ("count", "<i4"),
        ("device_type", "<i4"),
        ("country", "<i4"),
        ("utm_source", "<i4"),
    ]
)
# A visitor set (analytics.models.VisitorRollup.ids): sorted Visitor ids.
VISITOR_IDS_DTYPE = np.dtype("<i8")

# Journey trail cells that are not pages.
END = -1  # (exit) after the last page, or (entrance) before the first
NONE = -2  # the trail ended at an earlier level
LABEL_OTHER = -3  # a page outside the level's top pages


def epoch_us(moment: datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def pack(events: Sequence[tuple[int, int, int]]) -> bytes:
    """(time in microseconds, event id, action id) triples, in order -> the packed bytes."""
    return np.array(list(events), dtype=EVENT_DTYPE).tobytes()


def unpack(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=EVENT_DTYPE)


@dataclass
class Stream:
    group: np.ndarray  # int64
    t: np.ndarray  # int64, microseconds since the epoch
    event_id: np.ndarray  # int64
    code: np.ndarray  # int64

    @classmethod
    def empty(cls) -> Stream:
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, z, z)

    @classmethod
    def concat(cls, streams: Sequence[Stream]) -> Stream:
        if not streams:
            return cls.empty()
        return cls(
            *(np.concatenate([getattr(s, name) for s in streams]) for name in ("group", "t", "event_id", "code"))
        )

    def sorted(self) -> Stream:
        """Sorted by (group, time, event id).

        One stable sort by group keeps each group's events in their incoming order,
        which is already (time, id) order unless the group's sessions overlap in time;
        only the groups where the order breaks are sorted again on all three keys."""
        order = np.argsort(self.group, kind="stable")
        g, t = self.group[order], self.t[order]
        # Neighbours of one group whose times do not increase; those with equal times are out of
        # order only when their ids are.
        at = np.flatnonzero((g[1:] == g[:-1]) & (t[1:] <= t[:-1]))
        if len(at):
            ids = self.event_id
            at = at[(t[at + 1] < t[at]) | (ids[order[at + 1]] < ids[order[at]])]
        if len(at):
            # The positions of those groups (each contiguous in g).
            bad = np.unique(g[at])
            lo, hi = np.searchsorted(g, bad, "left"), np.searchsorted(g, bad, "right")
            sizes = hi - lo
            fix = np.arange(sizes.sum()) + np.repeat(lo - (np.cumsum(sizes) - sizes), sizes)
            order[fix] = order[fix][np.lexsort((self.event_id[order[fix]], t[fix], g[fix]))]
            t[fix] = self.t[order[fix]]
        return Stream(g, t, self.event_id[order], self.code[order])

    def __len__(self) -> int:
        return len(self.group)

    @property
    def nbytes(self) -> int:
        return self.group.nbytes + self.t.nbytes + self.event_id.nbytes + self.code.nbytes

    def of_groups(self, groups: np.ndarray) -> Stream:
        """The events of these groups (sorted, distinct), from a stream sorted by group; in its order."""
        lo, hi = np.searchsorted(self.group, groups, "left"), np.searchsorted(self.group, groups, "right")
        sizes = hi - lo
        at = np.arange(sizes.sum()) + np.repeat(lo - (np.cumsum(sizes) - sizes), sizes)
        return Stream(self.group[at], self.t[at], self.event_id[at], self.code[at])

    def frozen(self) -> Stream:
        """This stream, its arrays read-only (to be shared between requests)."""
        for array in (self.group, self.t, self.event_id, self.code):
            array.flags.writeable = False
        return self


# ---------------------------------------------------------------------------
# Funnels
# ---------------------------------------------------------------------------


@dataclass
class FunnelReach:
    visitor: np.ndarray  # the visitors who reached step 1, in stream order
    depth: np.ndarray  # per such visitor: how many steps
    times: np.ndarray  # (steps, visitors) microseconds of each reached step; -1 where not reached

    @property
    def nbytes(self) -> int:
        return self.visitor.nbytes + self.depth.nbytes + self.times.nbytes

    def without(self, visitors: np.ndarray) -> FunnelReach:
        """These visitors (sorted, distinct) left out."""
        keep = ~np.isin(self.visitor, visitors, assume_unique=True)
        return FunnelReach(self.visitor[keep], self.depth[keep], self.times[:, keep])

    @classmethod
    def concat(cls, parts: Sequence[FunnelReach]) -> FunnelReach:
        return cls(
            np.concatenate([p.visitor for p in parts]),
            np.concatenate([p.depth for p in parts]),
            np.concatenate([p.times for p in parts], axis=1),
        )


def funnel_reach(stream: Stream, n_steps: int, window_us: int) -> FunnelReach:
    """Per visitor, the steps reached, as analytics.algorithms.funnel_match defines them.

    `stream` is sorted (Stream.sorted); `stream.code` is a bit mask: bit k set when the event
    matches step k. Every occurrence of step 0 is a start; from a start the earliest later
    event matching the next step is taken while it lies within the window of the start.
    Chains of all starts advance together, one step at a time, by binary search among the
    positions of the events matching that step; a chain that stops is dropped. Per visitor
    the earliest start of those reaching the deepest step wins.
    """
    group, t, mask = stream.group, stream.t, stream.code
    starts = np.flatnonzero((mask & 1) != 0)  # (nonzero is faster on booleans)
    n = len(starts)
    times = np.full((n_steps, n), -1, dtype=np.int64)
    depth = np.ones(n, dtype=np.int64)
    owner = group[starts]
    if not n:
        return FunnelReach(owner, depth, times)
    times[0] = t[starts]
    # The chains still advancing: which start, where they are, whose, until when.
    chain, position, whose, deadline = np.arange(n), starts, owner, times[0] + window_us
    for k in range(1, n_steps):
        matching = np.flatnonzero((mask & (1 << k)) != 0)
        j = np.searchsorted(matching, position, side="right")
        inside = j < len(matching)
        candidate = matching[j[inside]]
        chain, whose, deadline = chain[inside], whose[inside], deadline[inside]
        reached = t[candidate]
        ok = (group[candidate] == whose) & (reached <= deadline)
        chain, position, whose, deadline = chain[ok], candidate[ok], whose[ok], deadline[ok]
        times[k, chain] = reached[ok]
        depth[chain] += 1
        if not len(chain):
            break
    # Starts follow the stream, so each visitor's are contiguous and in order: per visitor, the
    # first start whose depth is the visitor's deepest.
    first = np.ones(n, dtype=bool)
    first[1:] = owner[1:] != owner[:-1]
    runs = np.flatnonzero(first)
    run = np.cumsum(first) - 1
    deepest = depth == np.maximum.reduceat(depth, runs)[run]
    candidates = np.flatnonzero(deepest)
    keep = np.ones(len(candidates), dtype=bool)
    keep[1:] = run[candidates[1:]] != run[candidates[:-1]]
    chosen = candidates[keep]
    return FunnelReach(owner[chosen], depth[chosen], times[:, chosen])


def funnel_reach_with(base: Stream, base_reach: FunnelReach, more: Stream, n_steps: int, window_us: int) -> FunnelReach:
    """funnel_reach of `base` and `more` together, given `base_reach` = funnel_reach(base, ...):
    visitors are matched on their own, so only those with events in `more` are matched again,
    over all their events. `base` is sorted; `more` in any order."""
    if not len(more):
        return base_reach
    touched = np.unique(more.group)
    again = Stream.concat([base.of_groups(touched), more]).sorted()
    return FunnelReach.concat([base_reach.without(touched), funnel_reach(again, n_steps, window_us)])


@dataclass(frozen=True)
class FunnelStepCounts:
    entrants: int
    median_seconds_from_previous: float | None


def funnel_counts(reach: FunnelReach, n_steps: int) -> list[FunnelStepCounts]:
    out = []
    for k in range(n_steps):
        reached = reach.depth > k
        median = None
        if k and reached.any():
            gaps = (reach.times[k, reached] - reach.times[k - 1, reached]) / 1_000_000
            median = float(np.median(gaps))
        out.append(FunnelStepCounts(entrants=int(reached.sum()), median_seconds_from_previous=median))
    return out


# ---------------------------------------------------------------------------
# Journeys
# ---------------------------------------------------------------------------


def journey_trails(stream: Stream, *, page: int, direction: str, depth: int) -> np.ndarray:
    """Trails of (trails, depth + 1) page indexes from the first view of `page` in each session.

    `stream` holds page views, `code` a page's index; each session's views must be
    contiguous and in (time, id) order, sessions in any order. Consecutive views of one page
    count once (reloads). Column 0 is the page; column k the k-th page after (or
    before) it, END where the session stops, NONE beyond. Rows follow session order.
    """
    return session_trails(stream, page=page, direction=direction, depth=depth)[1]


def session_trails(stream: Stream, *, page: int, direction: str, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """The sessions with a trail (ascending) and their trails, as journey_trails has them.
    Sessions are traced on their own: the trails of two streams of different sessions, put
    in session order, are those of both streams together."""
    session, path = stream.group, stream.code
    n = len(session)
    if n:
        keep = np.ones(n, dtype=bool)
        keep[1:] = (session[1:] != session[:-1]) | (path[1:] != path[:-1])
        session, path = session[keep], path[keep]
        n = len(session)
    hits = np.flatnonzero(path == page)
    if not len(hits):
        return np.zeros(0, dtype=np.int64), np.zeros((0, depth + 1), dtype=np.int64)
    sessions, first = np.unique(session[hits], return_index=True)
    at = hits[first]
    trails = np.full((len(at), depth + 1), NONE, dtype=np.int64)
    trails[:, 0] = page
    alive = np.ones(len(at), dtype=bool)
    step = 1 if direction == "next" else -1
    for level in range(1, depth + 1):
        q = at + step * level
        inside = (q >= 0) & (q < n)
        qc = np.clip(q, 0, max(n - 1, 0))
        ok = alive & inside & (session[qc] == session[at])
        trails[ok, level] = path[qc[ok]]
        trails[alive & ~ok, level] = END
        alive = ok
    return sessions, trails


def journey_graph_from_trails(
    trails: np.ndarray, names: Sequence[str], *, page: str, direction: str, top: int
) -> dict[str, list[dict]]:
    """Sankey nodes and links of trails, exactly as analytics.algorithms.journey_graph builds them.

    At each level the `top` most common pages keep their name (ties: the page seen
    first, in session order, as Counter.most_common keeps them), the others are
    "(other)"; END is "(exit)" or "(entrance)".
    """
    end_marker = EXIT if direction == "next" else ENTRANCE
    depth = trails.shape[1] - 1
    labels = trails.copy()
    for level in range(1, depth + 1):
        column = trails[:, level]
        real = column[column >= 0]
        codes, first, counts = np.unique(real, return_index=True, return_counts=True)
        kept = codes[np.lexsort((first, -counts))[:top]]
        relabel = (column >= 0) & ~np.isin(column, kept)
        labels[relabel, level] = LABEL_OTHER

    def name(code: int) -> str:
        if code == END:
            return end_marker
        if code == LABEL_OTHER:
            return OTHER
        return names[code]

    nodes: list[tuple[int, str, int]] = []
    links: list[tuple[int, str, str, int]] = []
    for level in range(depth + 1):
        column = labels[:, level]
        values, counts = np.unique(column[column != NONE], return_counts=True)
        nodes.extend((level, name(int(v)), int(c)) for v, c in zip(values, counts, strict=True))
        if level:
            before = labels[:, level - 1]
            present = (column != NONE) & (before != END) & (before != NONE)
            # One integer per (before, after) pair: labels are >= LABEL_OTHER.
            width = int(labels.max(initial=0)) - LABEL_OTHER + 1
            pairs = (before[present] - LABEL_OTHER) * width + (column[present] - LABEL_OTHER)
            uniq, counts = np.unique(pairs, return_counts=True)
            links.extend(
                (level - 1, name(int(p // width) + LABEL_OTHER), name(int(p % width) + LABEL_OTHER), int(c))
                for p, c in zip(uniq, counts, strict=True)
            )
    nodes.sort(key=lambda n: (n[0], -n[2], n[1]))
    links.sort(key=lambda x: (x[0], -x[3], x[1], x[2]))
    return {
        "nodes": [{"id": f"{level}:{p}", "level": level, "page": p, "sessions": n} for level, p, n in nodes],
        "links": [{"source": f"{level}:{a}", "target": f"{level + 1}:{b}", "sessions": n} for level, a, b, n in links],
    }
