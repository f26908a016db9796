"""Plain-Python recounts of every analytics number over the same rows.

Written from the definitions, sharing no code with analytics/: if the rollups,
the raw reads or the planner that splits them go wrong, these disagree.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

CONVERSION_TYPES = {"conversion"}


class Recount:
    def __init__(self, sessions, events, *, start, end, tz="UTC", neuron_ids=None, device=None, country=None, utm=None):
        self.all_sessions = list(sessions)
        self.all_events = list(events)
        self.by_id = {s.pk: s for s in self.all_sessions}
        self.start, self.end, self.tz = start, end, ZoneInfo(tz)
        self.neuron_ids, self.device, self.country, self.utm = neuron_ids, device, country, utm

    def _match(self, s) -> bool:
        return (
            (self.neuron_ids is None or s.neuron_id in self.neuron_ids)
            and (self.device is None or s.device_type == self.device)
            and (self.country is None or s.country == self.country)
            and (self.utm is None or s.utm_source == self.utm)
        )

    def sessions(self, start=None, end=None):
        start, end = start or self.start, end or self.end
        return [
            s
            for s in self.all_sessions
            if s.consent.get("analytics") is True and start <= s.started_at < end and self._match(s)
        ]

    def events(self, start=None, end=None):
        start, end = start or self.start, end or self.end
        return [e for e in self.all_events if start <= e.timestamp < end and self._match(self.by_id[e.session_id])]

    def is_new(self, s) -> bool:
        return not any(
            o.neuron_id == s.neuron_id and o.anonymous_id == s.anonymous_id and o.started_at < s.started_at
            for o in self.all_sessions
        )

    def converted(self, s) -> bool:
        return any(e.session_id == s.pk and e.event_type in CONVERSION_TYPES for e in self.all_events)

    def metrics(self, start=None, end=None) -> dict:
        ss = self.sessions(start, end)
        es = self.events(start, end)
        n = len(ss)

        def rate(k):
            return k / n if n else 0.0

        return {
            "sessions": n,
            "visitors": len({(s.neuron_id, s.anonymous_id) for s in ss}),
            "newSessions": sum(self.is_new(s) for s in ss),
            "pageViews": sum(e.event_type == "page_view" for e in es),
            "events": len(es),
            "conversions": sum(e.event_type in CONVERSION_TYPES for e in es),
            "convertedSessions": sum(self.converted(s) for s in ss),
            "avgSessionDuration": (sum((s.last_activity_at - s.started_at).total_seconds() for s in ss) / n)
            if n
            else 0,
            "bounceRate": rate(sum(s.page_view_count <= 1 and s.interaction_count == 0 for s in ss)),
            "pagesPerSession": rate(sum(s.page_view_count for s in ss)),
            "conversionRate": rate(sum(self.converted(s) for s in ss)),
            "avgEngagement": (sum(s.engagement_score for s in ss) / n) if n else 0,
        }

    def local_days(self) -> list[tuple[datetime, datetime]]:
        out = []
        day = self.start.astimezone(self.tz).date()
        while True:
            a = datetime.combine(day, datetime.min.time(), tzinfo=self.tz)
            b = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=self.tz)
            if a >= self.end:
                return out
            out.append((max(a, self.start), min(b, self.end)))
            day += timedelta(days=1)

    def hours(self) -> list[tuple[datetime, datetime]]:
        out, t = [], self.start
        while t < self.end:
            out.append((t, t + timedelta(hours=1)))
            t += timedelta(hours=1)
        return out

    # breakdowns -------------------------------------------------------------

    def by_session_attr(self, key) -> Counter:
        return Counter(key(s) for s in self.sessions())

    def page_views_by_path(self) -> Counter:
        return Counter(e.page_path for e in self.events() if e.event_type == "page_view")

    def entry_pages(self) -> Counter:
        def path(url):
            if url.startswith("/") or not url:
                return url.split("?")[0]
            return urlsplit(url).path or "/"

        return Counter(path(s.landing_page) for s in self.sessions())

    def exit_pages(self) -> Counter:
        out = Counter()
        for s in self.sessions():
            views = sorted(
                (e for e in self.all_events if e.session_id == s.pk and e.event_type == "page_view"),
                key=lambda e: (e.timestamp, e.pk),
            )
            out[views[-1].page_path if views else ""] += 1
        return out

    def referrer_domains(self) -> Counter:
        def domain(r):
            if not r:
                return ""
            host = (urlsplit(r).hostname or "").lower()
            return host.removeprefix("www.")

        return Counter(domain(s.referrer) for s in self.sessions())

    def engagement_bins(self) -> Counter:
        return Counter(min(int(s.engagement_score // 10) * 10, 90) for s in self.sessions())

    # funnel / retention / journeys ------------------------------------------

    def funnel(self, steps, window_seconds) -> list[int]:
        """Entrants per step by exhaustive search over ordered event choices."""
        streams = defaultdict(list)
        for e in sorted(self.events(), key=lambda e: (e.timestamp, e.pk)):
            streams[(e.neuron_id, e.anonymous_id)].append(e)
        entrants = [0] * len(steps)
        for evs in streams.values():
            best = 0

            def extend(k, pos, t0, evs=evs):
                nonlocal best
                best = max(best, k)
                if k == len(steps):
                    return
                for j in range(pos, len(evs)):
                    if steps[k](evs[j]) and (k == 0 or (evs[j].timestamp - t0).total_seconds() <= window_seconds):
                        extend(k + 1, j + 1, evs[j].timestamp if k == 0 else t0)

            extend(0, 0, None)
            for k in range(best):
                entrants[k] += 1
        return entrants

    def retention(self, period: str, periods: int) -> list[tuple[date, int, list[int]]]:
        def key(s):
            day = s.started_at.astimezone(self.tz).date()
            return day if period == "day" else day - timedelta(days=day.weekday())

        first = {}
        seen = defaultdict(set)
        for s in self.all_sessions:
            if s.consent.get("analytics") is not True or not self._match(s):
                continue
            v = (s.neuron_id, s.anonymous_id)
            first[v] = min(first.get(v, s.started_at), s.started_at)
            seen[v].add(key(s))
        step = timedelta(days=1 if period == "day" else 7)
        cohorts = defaultdict(list)
        for v, t in first.items():
            if self.start <= t < self.end:
                cohorts[key(type("S", (), {"started_at": t})())].append(v)
        out = []
        for c in sorted(cohorts):
            members = cohorts[c]
            out.append(
                (c, len(members), [sum(c + k * step in seen[v] for v in members) for k in range(1, periods + 1)])
            )
        return out

    def journeys_next(self, page: str, depth: int) -> Counter:
        """Counts of full trails (page, next..., (exit)) before top-N grouping."""
        per_session = defaultdict(list)
        for e in sorted(self.events(), key=lambda e: (e.timestamp, e.pk)):
            if e.event_type == "page_view":
                per_session[e.session_id].append(e.page_path)
        trails = Counter()
        for paths in per_session.values():
            collapsed = [p for i, p in enumerate(paths) if i == 0 or paths[i - 1] != p]
            if page not in collapsed:
                continue
            i = collapsed.index(page)
            nxt = collapsed[i + 1 : i + 1 + depth]
            trails[tuple(nxt) + (("(exit)",) if len(nxt) < depth else ())] += 1
        return trails


def median_or_none(values):
    return statistics.median(values) if values else None
