"""The session engagement score, 0..100.

    score = 100 × (0.35·D + 0.25·P + 0.25·I + 0.15·C)

    D = min(duration / 10 min, 1)             time on site
    P = min((page views − 1) / 9, 1)          depth beyond the landing page
    I = min(interactions / 20, 1)             clicks, custom events, form use
    C = min(conversions, 1)                   any conversion counts fully

Each input saturates so one long idle tab or a click storm cannot dominate; a
one-page visit with no interaction scores 0 (a bounce), ten pages over ten
minutes with twenty interactions and a purchase scores 100.
"""

from __future__ import annotations

import math
from datetime import timedelta

WEIGHTS = {"duration": 0.35, "depth": 0.25, "interactions": 0.25, "conversions": 0.15}
DURATION_SATURATION = timedelta(minutes=10)
DEPTH_SATURATION = 9
INTERACTION_SATURATION = 20


def engagement_score(*, duration: timedelta, page_views: int, interactions: int, conversions: int) -> float:
    d = min(max(duration.total_seconds(), 0.0) / DURATION_SATURATION.total_seconds(), 1.0)
    p = min(max(page_views - 1, 0) / DEPTH_SATURATION, 1.0)
    i = min(max(interactions, 0) / INTERACTION_SATURATION, 1.0)
    c = 1.0 if conversions > 0 else 0.0
    raw = WEIGHTS["duration"] * d + WEIGHTS["depth"] * p + WEIGHTS["interactions"] * i + WEIGHTS["conversions"] * c
    # Half up to the hundredth, in double arithmetic only, so engagement_score_sql gives the same bits.
    return math.floor(100.0 * raw * 100.0 + 0.5) / 100.0


def engagement_score_sql(*, seconds: str, page_views: str, interactions: str, conversions: str) -> str:
    """engagement_score as a PostgreSQL expression over SQL expressions for its inputs
    (`seconds`: the duration in seconds, double precision; the others integers).

    The same double-precision operations in the same order, so it returns exactly what
    engagement_score returns (a test holds the two together): the group commit of single
    events updates a session's score in the statement that stores its event.
    """

    def f(value: float) -> str:
        return f"{value!r}::float8"

    def capped(expr: str) -> str:
        return f"least({expr}, {f(1.0)})"

    d = capped(f"greatest({seconds}, {f(0.0)}) / {f(DURATION_SATURATION.total_seconds())}")
    p = capped(f"greatest(({page_views}) - 1, 0)::float8 / {f(float(DEPTH_SATURATION))}")
    i = capped(f"greatest({interactions}, 0)::float8 / {f(float(INTERACTION_SATURATION))}")
    c = f"(CASE WHEN ({conversions}) > 0 THEN {f(1.0)} ELSE {f(0.0)} END)"
    raw = " + ".join(
        f"{f(WEIGHTS[name])} * {term}"
        for name, term in (("duration", d), ("depth", p), ("interactions", i), ("conversions", c))
    )
    return f"(floor({f(100.0)} * ({raw}) * {f(100.0)} + {f(0.5)}) / {f(100.0)})"
