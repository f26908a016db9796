"""Analytics benchmark: 1M events / 100k sessions in PostgreSQL, rollups, endpoint latency vs DuckDB.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<db> .venv/bin/python bench/analytics.py [--events N]

1. Generates sessions and events over the last 30 days and loads them with COPY
   (the rows go into the database named by DATABASE_URL: use a scratch one).
2. Runs the rollup jobs as the beat schedule would and times them.
3. Times every analytics endpoint for the 30-day range through Django's test
   client (full view, selector and rendering path; no network): p50/p95 over
   repeated calls.
4. Loads the same rows into DuckDB (in memory) and times equivalent raw-scan
   queries; prints our time as a ratio of DuckDB's, and the CPU time per call of
   each side (ours: this process plus its PostgreSQL backend; DuckDB: this process,
   all its threads), which depends far less on the machine's other load. In the same run, times the
   PostgreSQL raw-SQL baselines of DESIGN.md (distinct sessions per day, events
   by type, a 4-step funnel).

Figures depend on the machine; this one is shared, so run it twice and read both.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("TESTING", "1")  # quiet development-key warnings; behaviour is production's

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from analytics import services  # noqa: E402
from analytics.models import (  # noqa: E402
    DailyRollup,
    HourlyRollup,
    RollupPeriod,
    RollupWatermark,
    SequenceDay,
    SessionSequence,
    VisitorRollup,
)
from federation.models import Neuron  # noqa: E402
from sessions_app.engagement import engagement_score  # noqa: E402
from sessions_app.models import BehaviorEvent, UserSession  # noqa: E402

PAGES = ["/", "/pricing", "/signup", "/checkout", "/docs", "/about"] + [f"/blog/post-{i}" for i in range(44)]
PAGE_WEIGHTS = [30, 12, 6, 4, 8, 3] + [1.0 / (i + 1) * 10 for i in range(44)]
REFERRERS = ["", "", "", "https://www.google.com/", "https://news.ycombinator.com/item", "https://t.co/x"]
UTM = ["", "", "", "newsletter", "ads", "partner"]
DEVICES = [("desktop", "Chrome", "Windows"), ("desktop", "Firefox", "Linux"), ("mobile", "Mobile Safari", "iOS"),
           ("mobile", "Chrome Mobile", "Android"), ("tablet", "Mobile Safari", "iOS")]  # fmt: skip
COUNTRIES = ["US", "GB", "DE", "FR", "IN", "BR", "JP", "CA", "AU", "NL", ""]


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def cpu_seconds(backend_pid: int | None = None) -> float:
    """CPU time of this process (every thread: DuckDB's too) plus, when given, of a PostgreSQL
    backend (its scheduler statistics, nanoseconds). Unlike wall time, it barely depends on what
    else runs on the machine. Parallel query workers are not counted."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    if backend_pid is not None:
        with open(f"/proc/{backend_pid}/schedstat") as stat:
            total += int(stat.read().split()[0]) / 1e9
    return total


def timed(
    fn, repeat: int, cpu: list[float] | None = None, backend_pid: int | None = None, first: list[float] | None = None
) -> list[float]:
    t0 = time.perf_counter()
    fn()  # warm caches and connections once
    if first is not None:
        first.append((time.perf_counter() - t0) * 1000)
    out = []
    c0 = cpu_seconds(backend_pid)
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    if cpu is not None:
        cpu.append((cpu_seconds(backend_pid) - c0) * 1000 / repeat)
    return out


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def _columns(model) -> list:
    return list(model._meta.concrete_fields)


def generate(*, n_events: int, n_sessions: int, now: datetime, seed: int = 1) -> tuple[int, int]:
    rng = random.Random(seed)
    with connection.cursor() as cur:
        cur.execute(
            "TRUNCATE behavior_events, user_sessions, analytics_rollup_hourly, analytics_rollup_daily, "
            "analytics_rollup_periods, analytics_rollup_watermarks, analytics_session_sequences, analytics_visitors, "
            "analytics_actions, analytics_rollup_visitors, analytics_sequence_days RESTART IDENTITY CASCADE"
        )
    neuron, _ = Neuron.objects.get_or_create(
        slug="bench", defaults={"name": "Bench", "publishable_key": "pk_bench", "secret_key_hash": "x" * 64}
    )
    start = now - timedelta(days=30)
    visitors: list[str] = []
    consented_ids: list[int] = []
    sessions: list[dict] = []
    for _ in range(n_sessions):
        if visitors and rng.random() < 0.4:
            anon = visitors[int(rng.random() ** 2 * len(visitors))]
        else:
            anon = str(uuid.UUID(int=rng.getrandbits(128)))
            visitors.append(anon)
        device, browser, os_name = rng.choice(DEVICES)
        consent = rng.random() < 0.9
        started = start + timedelta(seconds=rng.random() * 30 * 86400)
        sessions.append(
            {
                "anon": anon,
                "device": device,
                "browser": browser,
                "os": os_name,
                "country": rng.choice(COUNTRIES),
                "referrer": rng.choice(REFERRERS),
                "utm": rng.choice(UTM),
                "started": started,
                "consent": consent,
                "events": [],
            }
        )
    # Ids in order of time, as a live system assigns them (a visitor's sessions in id order are in time order).
    sessions.sort(key=lambda s: s["started"])
    for i, s in enumerate(sessions):
        s["id"] = i + 1
        if s["consent"]:
            consented_ids.append(i)
    # Spread the events over consented sessions (mean ~ n_events / consented sessions).
    per = [1] * len(consented_ids)
    for _ in range(n_events - len(per)):
        per[int(rng.random() ** 1.5 * len(per))] += 1
    rng.shuffle(per)
    for idx, count in zip(consented_ids, per, strict=True):
        s = sessions[idx]
        t = s["started"]
        path = rng.choices(PAGES, PAGE_WEIGHTS)[0]
        evs = [("page_view", "", path, t)]
        for _ in range(count - 1):
            t = t + timedelta(seconds=rng.randrange(5, 180))
            r = rng.random()
            if r < 0.62:
                path = rng.choices(PAGES, PAGE_WEIGHTS)[0]
                evs.append(("page_view", "", path, t))
            elif r < 0.87:
                evs.append(("click", rng.choice(["signup", "cta", "nav", "play"]), "", t))
            elif r < 0.97:
                evs.append(("custom", rng.choice(["video", "scroll", ""]), "", t))
            else:
                evs.append(("conversion", "purchase", "", t))
        s["events"] = evs

    session_fields = _columns(UserSession)
    event_fields = _columns(BehaviorEvent)
    t0 = time.perf_counter()
    raw = connection.connection  # psycopg 3 connection
    with raw.cursor() as cur:
        names = ", ".join(f.column for f in session_fields)
        with cur.copy(f"COPY user_sessions ({names}) FROM STDIN") as copy:
            for s in sessions:
                evs = s["events"]
                last = evs[-1][3] if evs else s["started"]
                pv = sum(e[0] == "page_view" for e in evs)
                conv = sum(e[0] == "conversion" for e in evs)
                inter = len(evs) - pv - conv
                values = {
                    "id": s["id"],
                    "public_id": uuid.UUID(int=rng.getrandbits(128)),
                    "neuron": neuron.pk,
                    "token_hash": uuid.uuid4().hex + uuid.uuid4().hex,
                    "token_rotated_at": s["started"],
                    "anonymous_id": s["anon"],
                    "device_type": s["device"],
                    "browser": s["browser"],
                    "os": s["os"],
                    "country": s["country"],
                    "referrer": s["referrer"],
                    "landing_page": evs[0][2] if evs else "/",
                    "utm_source": s["utm"],
                    "started_at": s["started"],
                    "last_activity_at": last,
                    "expires_at": last + timedelta(minutes=30),
                    "ended_at": last + timedelta(minutes=30) if last < now - timedelta(minutes=30) else None,
                    "event_count": len(evs),
                    "page_view_count": pv,
                    "interaction_count": inter,
                    "conversion_count": conv,
                    "engagement_score": engagement_score(
                        duration=last - s["started"], page_views=pv, interactions=inter, conversions=conv
                    ),
                    "consent": {"analytics": s["consent"], "personalization": s["consent"], "marketing": False},
                }
                copy.write_row([_db_value(f, values) for f in session_fields])
        names = ", ".join(f.column for f in event_fields)
        eid = 0
        # Events too are numbered in order of time, as they would be received.
        received = sorted(((e[3], n, e) for n, s in enumerate(sessions) for e in s["events"]), key=lambda r: r[:2])
        with cur.copy(f"COPY behavior_events ({names}) FROM STDIN") as copy:
            for _, n, (event_type, name, path, ts) in received:
                s = sessions[n]
                eid += 1
                values = {
                    "id": eid,
                    "neuron": neuron.pk,
                    "session": s["id"],
                    "anonymous_id": s["anon"],
                    "event_type": event_type,
                    "event_name": name,
                    "page_path": path,
                    "timestamp": ts,
                    "received_at": ts,
                    "message_id": f"m{eid}",
                }
                copy.write_row([_db_value(f, values) for f in event_fields])
        cur.execute("SELECT setval('user_sessions_id_seq', %s)", [len(sessions)])
        cur.execute("SELECT setval('behavior_events_id_seq', %s)", [eid])
    raw.commit()
    load = time.perf_counter() - t0
    with connection.cursor() as cur:
        cur.execute("ANALYZE user_sessions; ANALYZE behavior_events")
    print(
        f"loaded {len(sessions):,} sessions and {eid:,} events with COPY in {load:.1f} s ({eid / load:,.0f} events/s)"
    )
    return len(sessions), eid


def _db_value(field, values: dict):
    from psycopg.types.json import Jsonb

    key = field.name
    if key in values:
        value = values[key]
    elif field.null:
        value = None
    else:
        value = field.get_default()
    if isinstance(value, dict | list):
        return Jsonb(value)
    return value


# ---------------------------------------------------------------------------
# Timings
# ---------------------------------------------------------------------------


def endpoints(today: str, first: str) -> dict[str, tuple[str, dict]]:
    base = {"from": first, "to": today}
    funnel = {"step": ["page:/", "page:/pricing", "event:click:signup", "event:conversion"], "window": 86400}
    return {
        "metrics": ("/api/sessions/metrics", base),
        "metrics (deviceType=mobile, tz=America/New_York)": (
            "/api/sessions/metrics",
            {**base, "deviceType": "mobile", "tz": "America/New_York"},
        ),
        "trends sessions/day": ("/api/sessions/analytics/trends", {**base, "metric": "sessions"}),
        "trends visitors/day": ("/api/sessions/analytics/trends", {**base, "metric": "visitors"}),
        "funnel 4 steps": ("/api/sessions/analytics/funnel", {**base, **funnel}),
        "journeys /pricing next 3": ("/api/sessions/analytics/journeys", {**base, "page": "/pricing"}),
        "retention day x7": ("/api/sessions/analytics/retention", {**base, "period": "day", "periods": 7}),
        "engagement": ("/api/sessions/analytics/engagement", base),
        "pages": ("/api/sessions/analytics/pages", base),
        "referrers": ("/api/sessions/analytics/referrers", base),
        "events": ("/api/sessions/analytics/events", base),
        "devices": ("/api/sessions/devices", base),
        "geographic": ("/api/sessions/geographic", base),
        "segments": ("/api/sessions/segments", base),
    }


DUCK_SQL = {
    "metrics": """
        WITH s AS (SELECT * FROM sessions WHERE analytics AND started_at >= $a AND started_at < $b),
        conv AS (SELECT DISTINCT session_id FROM events WHERE event_type = 'conversion')
        SELECT count(*), count(DISTINCT anonymous_id), sum(page_view_count),
               avg(epoch(last_activity_at) - epoch(started_at)),
               avg(CASE WHEN page_view_count <= 1 AND interaction_count = 0 THEN 1 ELSE 0 END),
               (SELECT count(*) FROM s JOIN conv ON conv.session_id = s.id),
               (SELECT count(*) FROM events WHERE timestamp >= $a AND timestamp < $b AND event_type = 'page_view'),
               (SELECT count(*) FROM events WHERE timestamp >= $a AND timestamp < $b AND event_type = 'conversion')
        FROM s""",
    "trends sessions/day": """
        SELECT date_trunc('day', started_at) d, count(*) FROM sessions
        WHERE analytics AND started_at >= $a AND started_at < $b GROUP BY 1""",
    "trends visitors/day": """
        SELECT date_trunc('day', started_at) d, count(DISTINCT anonymous_id) FROM sessions
        WHERE analytics AND started_at >= $a AND started_at < $b GROUP BY 1""",
    # From each visitor's first step-1 event (ours tries every start: at least as much work).
    "funnel 4 steps": """
        WITH e AS (SELECT anonymous_id v, timestamp t,
                          CASE WHEN event_type = 'page_view' AND page_path = '/' THEN 1
                               WHEN event_type = 'page_view' AND page_path = '/pricing' THEN 2
                               WHEN event_type = 'click' AND event_name = 'signup' THEN 3 ELSE 4 END step
                   FROM events WHERE timestamp >= $a AND timestamp < $b
                   AND ((event_type = 'page_view' AND page_path IN ('/', '/pricing'))
                        OR (event_type = 'click' AND event_name = 'signup') OR event_type = 'conversion')),
        s1 AS (SELECT v, min(t) t1 FROM e WHERE step = 1 GROUP BY v),
        s2 AS (SELECT s1.v, s1.t1, min(e.t) t2 FROM s1 JOIN e ON e.v = s1.v AND e.step = 2 AND e.t >= s1.t1
               AND e.t <= s1.t1 + INTERVAL 1 DAY GROUP BY 1, 2),
        s3 AS (SELECT s2.v, s2.t1, min(e.t) t3 FROM s2 JOIN e ON e.v = s2.v AND e.step = 3 AND e.t >= s2.t2
               AND e.t <= s2.t1 + INTERVAL 1 DAY GROUP BY 1, 2),
        s4 AS (SELECT s3.v FROM s3 JOIN e ON e.v = s3.v AND e.step = 4 AND e.t >= s3.t3
               AND e.t <= s3.t1 + INTERVAL 1 DAY GROUP BY 1)
        SELECT (SELECT count(*) FROM s1), (SELECT count(*) FROM s2), (SELECT count(*) FROM s3),
               (SELECT count(*) FROM s4)""",
    "journeys /pricing next 3": """
        WITH pv AS (SELECT session_id, page_path p, row_number() OVER (PARTITION BY session_id ORDER BY timestamp) n
                    FROM events WHERE event_type = 'page_view' AND timestamp >= $a AND timestamp < $b),
        f AS (SELECT session_id, min(n) n FROM pv WHERE p = '/pricing' GROUP BY 1)
        SELECT pv.n - f.n lvl, pv.p, count(*) FROM f JOIN pv ON pv.session_id = f.session_id
        AND pv.n BETWEEN f.n AND f.n + 3 GROUP BY 1, 2""",
    "retention day x7": """
        WITH f AS (SELECT anonymous_id, min(started_at) first FROM sessions WHERE analytics GROUP BY 1
                   HAVING min(started_at) >= $a AND min(started_at) < $b)
        SELECT date_trunc('day', f.first) c,
               date_diff('day', date_trunc('day', f.first), date_trunc('day', s.started_at)) k,
               count(DISTINCT s.anonymous_id)
        FROM f JOIN sessions s USING (anonymous_id) WHERE s.analytics GROUP BY 1, 2 HAVING k <= 7""",
    "engagement": """
        SELECT least(floor(engagement_score / 10), 9), count(*) FROM sessions
        WHERE analytics AND started_at >= $a AND started_at < $b GROUP BY 1""",
    "pages": """
        SELECT (SELECT list(x) FROM (SELECT page_path, count(*) x FROM events WHERE event_type = 'page_view'
                AND timestamp >= $a AND timestamp < $b GROUP BY 1 ORDER BY 2 DESC LIMIT 10)),
               (SELECT list(x) FROM (SELECT landing_page, count(*) x FROM sessions WHERE analytics
                AND started_at >= $a AND started_at < $b GROUP BY 1 ORDER BY 2 DESC LIMIT 10)),
               (SELECT list(x) FROM (SELECT p, count(*) x FROM (SELECT session_id, arg_max(page_path, timestamp) p
                FROM events WHERE event_type = 'page_view' GROUP BY 1) GROUP BY 1 ORDER BY 2 DESC LIMIT 10))""",
    "referrers": """
        SELECT regexp_extract(referrer, '//(?:www\\.)?([^/]+)', 1), utm_source, count(*) FROM sessions
        WHERE analytics AND started_at >= $a AND started_at < $b GROUP BY GROUPING SETS ((1), (2))""",
    "events": """
        SELECT event_type, event_name, count(*) FROM events WHERE timestamp >= $a AND timestamp < $b
        GROUP BY GROUPING SETS ((event_type), (event_type, event_name))""",
    "devices": """
        SELECT device_type, browser, os, count(*) FROM sessions WHERE analytics AND started_at >= $a
        AND started_at < $b GROUP BY GROUPING SETS ((device_type), (browser), (os))""",
    "geographic": """
        SELECT country, count(*) FROM sessions WHERE analytics AND started_at >= $a AND started_at < $b GROUP BY 1""",
    "segments": """
        SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM sessions o WHERE o.anonymous_id = s.anonymous_id
               AND o.started_at < s.started_at)), device_type, country, count(*)
        FROM sessions s WHERE analytics AND started_at >= $a AND started_at < $b
        GROUP BY GROUPING SETS ((), (device_type), (country))""",
}

PG_BASELINES = {
    "distinct sessions per day": """
        SELECT date_trunc('day', timestamp), count(DISTINCT session_id) FROM behavior_events
        WHERE timestamp >= %(a)s AND timestamp < %(b)s GROUP BY 1""",
    "events by type": """
        SELECT event_type, count(*) FROM behavior_events WHERE timestamp >= %(a)s AND timestamp < %(b)s GROUP BY 1""",
    "4-step funnel": DUCK_SQL["funnel 4 steps"]
    .replace("$a", "%(a)s")
    .replace("$b", "%(b)s")
    .replace("FROM events", "FROM behavior_events")
    .replace("INTERVAL 1 DAY", "INTERVAL '1 day'")
    .replace("WITH e AS (", "WITH e AS MATERIALIZED ("),
}


def duckdb_load(tmp: Path):
    import duckdb

    t0 = time.perf_counter()
    with connection.cursor() as cur:
        raw = cur.connection
        for table, query in (
            (
                "sessions",
                "SELECT id, anonymous_id, device_type, browser, os, country, referrer, landing_page, utm_source, "
                "started_at, last_activity_at, page_view_count, interaction_count, engagement_score, "
                "(consent->>'analytics')::boolean AS analytics FROM user_sessions",
            ),
            (
                "events",
                "SELECT session_id, anonymous_id, event_type, event_name, page_path, timestamp FROM behavior_events",
            ),
        ):
            with (
                open(tmp / f"{table}.csv", "wb") as out,
                raw.cursor().copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER)") as copy,
            ):
                for chunk in copy:
                    out.write(chunk)
    db = duckdb.connect()
    db.execute("SET TimeZone = 'UTC'")
    for table in ("sessions", "events"):
        db.execute(f"CREATE TABLE {table} AS SELECT * FROM read_csv_auto('{tmp / (table + '.csv')}')")
    print(f"DuckDB: same rows exported and loaded in {time.perf_counter() - t0:.1f} s")
    return db


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--skip-load", action="store_true", help="reuse the rows already loaded")
    parser.add_argument("--only", default="", help="comma-separated endpoint labels (prefixes) to time")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("set DATABASE_URL to a scratch PostgreSQL database")
    call_command("migrate", verbosity=0)
    now = datetime.now(UTC).replace(microsecond=0)
    print(f"analytics benchmark on {connection.settings_dict['NAME']} (shared 2-core machine; figures vary by run)")
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    if not args.skip_load:
        generate(n_events=args.events, n_sessions=args.sessions, now=now)
        for model in (HourlyRollup, DailyRollup, RollupPeriod, RollupWatermark, VisitorRollup, SequenceDay):
            model.objects.all().delete()

    t0 = time.perf_counter()
    built = services.rollup_advance(now=now)
    first_run = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = services.rollup_advance(now=now + timedelta(hours=1))
    incremental = time.perf_counter() - t0
    t0 = time.perf_counter()
    services.rollup_reconcile(now=now)
    reconcile = time.perf_counter() - t0
    # The beat job then packs the sessions that ended since (analytics.tasks.advance_rollups).
    t0 = time.perf_counter()
    early = services.sequences_build_ended(now=now)
    early_s = time.perf_counter() - t0
    print(
        f"rollups: first run {first_run:.1f} s ({built['hours']} hours, {built['days']} days; "
        f"{HourlyRollup.objects.count():,} hourly + {DailyRollup.objects.count():,} daily rows, "
        f"{SessionSequence.objects.count():,} session sequences in {SequenceDay.objects.count():,} day rows, "
        f"{VisitorRollup.objects.count():,} visitor sets); "
        f"next hour {incremental * 1000:.0f} ms ({again['hours']} hour); reconcile of 7 days {reconcile * 1000:.0f} ms"
    )
    print(f"sequences of sessions that ended since the watermark: {early:,} in {early_s:.1f} s")
    closed = RollupWatermark.objects.get(granularity="hour").closed_through
    print(
        f"closed through {closed:%Y-%m-%d %H:%M} (the oldest session not yet settled): raw rows at query time for "
        f"the last {(now - closed).total_seconds() / 3600:.1f} hours (at most ANALYTICS_ROLLUP_SETTLE, "
        f"{settings.ANALYTICS_ROLLUP_SETTLE})"
    )
    # A production server's autovacuum keeps visibility maps (index-only scans) and planner
    # statistics current; a scratch server may run without it, so catch up once, as it would.
    t0 = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
    print(f"VACUUM ANALYZE (what autovacuum does in production) {time.perf_counter() - t0:.1f} s")

    # Staff endpoints need their model permissions (config.api.permissions): a superuser holds them all.
    user, _ = get_user_model().objects.update_or_create(
        username="bench-staff", defaults={"is_staff": True, "is_superuser": True, "email": "bench@example.com"}
    )
    client = APIClient()
    client.force_authenticate(user)
    today = now.date()
    first = today - timedelta(days=29)
    a = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    b = datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=UTC)

    with tempfile.TemporaryDirectory() as tmp:
        duck = duckdb_load(Path(tmp))
        with connection.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            backend = cur.fetchone()[0]
        local_db = connection.settings_dict["HOST"] in ("127.0.0.1", "localhost", "")
        print(
            f"\n{'endpoint (30 days)':<50} {'p50 ms':>8} {'p95 ms':>8} {'duckdb p50':>11} {'ours/duck':>10}"
            f" {'cpu ms':>8} {'duck cpu':>9} {'1st ms':>8}"
        )
        print(
            "(1st ms: the endpoint's first call in this process, with the rollup sums not yet in its "
            "cache; p50/p95 over the calls after it)"
        )
        only = [o.strip() for o in args.only.split(",") if o.strip()]
        for label, (url, params) in endpoints(today.isoformat(), first.isoformat()).items():
            if only and not any(label.startswith(o) for o in only):
                continue

            def call(url=url, params=params):
                response = client.get(url, params)
                assert response.status_code == 200, response.content[:300]

            cpu: list[float] = []
            first_call: list[float] = []
            ours = timed(call, args.repeat, cpu, backend if local_db else None, first_call)
            key = label.split(" (")[0]
            duck_ms = None
            duck_cpu: list[float] = []
            if key in DUCK_SQL:
                sql = DUCK_SQL[key]
                duck_ms = timed(lambda sql=sql: duck.execute(sql, {"a": a, "b": b}).fetchall(), args.repeat, duck_cpu)
            d50 = statistics.median(duck_ms) if duck_ms else None
            ratio = f"{statistics.median(ours) / d50:>9.2f}x" if d50 else f"{'-':>10}"
            d50s = f"{d50:>11.1f}" if d50 else f"{'-':>11}"
            dcpu = f"{duck_cpu[0]:>9.1f}" if duck_cpu else f"{'-':>9}"
            print(
                f"{label:<50} {statistics.median(ours):>8.1f} {pct(ours, 0.95):>8.1f} {d50s} {ratio}"
                f" {cpu[0]:>8.1f} {dcpu} {first_call[0]:>8.1f}"
            )

        print("load average after the endpoints: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
        if only:
            return
        print("\nbaselines on the same rows (raw scans, no rollups):")
        print(f"{'query':<32} {'PostgreSQL p50 ms':>18} {'DuckDB p50 ms':>14}")
        duck_equivalent = {
            "distinct sessions per day": "SELECT date_trunc('day', timestamp), count(DISTINCT session_id) FROM events "
            "WHERE timestamp >= $a AND timestamp < $b GROUP BY 1",
            "events by type": "SELECT event_type, count(*) FROM events "
            "WHERE timestamp >= $a AND timestamp < $b GROUP BY 1",
            "4-step funnel": DUCK_SQL["funnel 4 steps"],
        }
        for label, sql in PG_BASELINES.items():
            with connection.cursor() as cur:
                pg = timed(lambda sql=sql, cur=cur: (cur.execute(sql, {"a": a, "b": b}), cur.fetchall()), 5)
            dk = timed(lambda q=duck_equivalent[label]: duck.execute(q, {"a": a, "b": b}).fetchall(), 5)
            print(f"{label:<32} {statistics.median(pg):>18.1f} {statistics.median(dk):>14.1f}")


if __name__ == "__main__":
    main()
