"""Operator dashboard figures: streamed export, page loads over 1M events, live push latency.

    DATABASE_URL=postgres://… REDIS_URL=redis://… python bench/dashboard.py \
        [--sessions 100000] [--events 1000000] [--pushes 20] [--port 8175] [--steps export,pages,push]

1. Seeds (once; re-runs reuse it) a site with --sessions sessions and --events events
   through COPY, and builds the analytics rollups as the beat job would.
2. Export: GET /api/sessions/admin/export?format=csv for the newest 10,000 sessions and for
   all of them, in process: wall time to the last byte, and the peak of Python allocations
   while streaming (tracemalloc, a separate pass). Baseline in the same run: PostgreSQL's own
   COPY (SELECT the same columns) TO STDOUT. Target: 10,000 sessions in < 2 s, flat memory.
3. Page loads (in process, median of 5): overview (live part and a 7-day range report), sessions
   explorer (first page and a deep keyset page), a session page, privacy centre, and the report
   pages (funnels, journeys, retention, segments). Baseline: the raw "events by type" GROUP BY
   over all events (the design's 130 ms reference query).
4. Live push: a uvicorn server, one dashboard websocket; post --pushes events through the API,
   one at a time, and time until each appears in a snapshot (p50 / p95 / max; a push waits at
   most PUSH_TIMEOUT). Baseline: the tick interval (DASHBOARD_TICK_SECONDS). Target: < 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import tracemalloc
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import Server, bench_env  # noqa: E402

SLUG = "bench-dashboard"
FUNNEL_LAST = "event:track:Add%20to%20cart"
PUSH_TIMEOUT = 10.0  # seconds one push may take before it counts as missed
PAGES = ["/", "/pricing", "/blog/launch", "/docs/start", "/checkout", "/account", "/search", "/about"]


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()


def copy_rows(model, rows) -> None:
    """COPY model instances into their table (the fields Django would insert, in order)."""
    from django.db import connection

    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {model._meta.db_table} ({columns}) FROM STDIN") as copy:
            for obj in rows:
                copy.write_row([f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields])


def seed(n_sessions: int, n_events: int):
    from django.utils import timezone

    from federation.models import Neuron
    from federation.services import neuron_create
    from sessions_app.models import BehaviorEvent, UserSession

    neuron = Neuron.objects.filter(slug=SLUG).first()
    if neuron and UserSession.objects.filter(neuron=neuron).count() >= n_sessions:
        print(f"reusing seeded site {SLUG}")
        return neuron, None
    creds = neuron_create(slug=SLUG, name="Dashboard benchmark") if neuron is None else None
    neuron = creds.neuron if creds else neuron
    now = timezone.now()
    span = timedelta(days=30)
    t0 = time.perf_counter()

    def sessions():
        for i in range(n_sessions):
            started = now - span + span * (i / n_sessions)
            yield UserSession(
                neuron=neuron,
                token_hash=uuid.uuid4().hex + uuid.uuid4().hex,
                token_rotated_at=started,
                anonymous_id=str(uuid.uuid4()),
                device_type=("desktop", "mobile", "tablet")[i % 3],
                browser=("Chrome", "Firefox", "Safari")[i % 3],
                os="Linux",
                country=("GB", "FR", "DE", "US", "ES")[i % 5],
                ip_truncated="81.2.69.0",
                landing_page=PAGES[i % len(PAGES)],
                started_at=started,
                last_activity_at=started + timedelta(minutes=5),
                expires_at=started + timedelta(minutes=35),
                ended_at=started + timedelta(minutes=35) if started + timedelta(minutes=35) < now else None,
                event_count=n_events // n_sessions,
                consent={"analytics": True, "personalization": i % 2 == 0, "marketing": i % 4 == 0},
            )

    copy_rows(UserSession, sessions())
    ids = list(UserSession.objects.filter(neuron=neuron).order_by("id").values_list("id", "started_at", "anonymous_id"))
    per = max(1, n_events // len(ids))

    def events():
        count = 0
        for session_id, started, anon in ids:
            for j in range(per):
                if count >= n_events:
                    return
                at = started + timedelta(seconds=20 * j)
                yield BehaviorEvent(
                    neuron=neuron,
                    session_id=session_id,
                    anonymous_id=anon,
                    event_type="page_view" if j % 4 else "track",
                    event_name="" if j % 4 else "Add to cart",
                    page_path=PAGES[(session_id + j) % len(PAGES)],
                    timestamp=at,
                    received_at=at,
                    message_id=f"{session_id}-{j}",
                )
                count += 1

    copy_rows(BehaviorEvent, events())
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE user_sessions; ANALYZE behavior_events")
    print(f"seeded {n_sessions} sessions and {n_events} events in {time.perf_counter() - t0:.1f}s")
    return neuron, creds


def rollups() -> None:
    """Build the analytics rollups as the beat job does in production (the report pages read them for
    closed hours); a re-run only adds the hours that closed since."""
    from analytics import services

    t0 = time.perf_counter()
    built = services.rollup_advance()
    print(f"rollups: {built['hours']} hours, {built['days']} days built in {time.perf_counter() - t0:.1f} s")


def staff_client():
    from django.contrib.auth import get_user_model
    from django.test import Client

    # Staff endpoints need their model permissions (config.api.permissions): a superuser holds them all.
    user, _ = get_user_model().objects.update_or_create(
        username="bench-operator", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    return client, user


def bench_export(client, n_sessions: int) -> None:
    from django.db import connection

    from sessions_app.models import UserSession

    newest = UserSession.objects.filter(neuron__slug=SLUG).order_by("-started_at").values_list("started_at", flat=True)
    cut = newest[9_999]
    n_sessions = newest.count()  # the push benchmark of an earlier run adds a session or two
    cases = [("newest 10,000", {"startedAfter": cut.isoformat()}, 10_000), (f"all {n_sessions:,}", {}, n_sessions)]
    print("\nexport (CSV, streamed, in process)")
    timings = []
    for label, extra, expected in cases:
        params = {"format": "csv", "neuron": SLUG, **extra}
        t0 = time.perf_counter()
        response = client.get("/api/sessions/admin/export", params)
        lines = sum(chunk.count(b"\n") for chunk in response.streaming_content)
        elapsed = time.perf_counter() - t0

        tracemalloc.start()
        response = client.get("/api/sessions/admin/export", params)
        for _ in response.streaming_content:
            pass
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

        sql = (
            "COPY (SELECT s.public_id, n.slug, s.anonymous_id, p.user_id_hash IS NOT NULL, s.device_type, s.browser,"
            " s.os, s.country, s.referrer, s.landing_page, s.utm_source, s.utm_medium, s.utm_campaign, s.started_at,"
            " s.last_activity_at, s.ended_at, s.end_reason, s.event_count, s.page_view_count, s.conversion_count,"
            " s.engagement_score, s.consent FROM user_sessions s JOIN neurons n ON n.id = s.neuron_id"
            " LEFT JOIN global_user_profiles p ON p.id = s.profile_id WHERE n.slug = %s"
            + (" AND s.started_at >= %s" if extra else "")
            + " ORDER BY s.id) TO STDOUT (FORMAT csv)"
        )
        args = [SLUG, cut] if extra else [SLUG]
        t1 = time.perf_counter()
        with connection.cursor() as cursor:
            with cursor.cursor.copy(sql, args) as copy:
                raw_bytes = sum(len(block) for block in copy)
        raw = time.perf_counter() - t1
        assert lines == expected + 1, (lines, expected)
        timings.append(elapsed)
        print(
            f"  {label:<16} {elapsed:6.2f} s  ({expected / elapsed:>8.0f} rows/s)  peak Python memory "
            f"{peak / 1e6:6.1f} MB   baseline COPY TO STDOUT {raw:5.2f} s ({raw_bytes / 1e6:.1f} MB)  "
            f"ratio {elapsed / raw:4.1f}x"
        )
    print(f"  target 10,000 sessions < 2 s: {'meets' if timings[0] < 2 else 'MISSES'} ({timings[0]:.2f} s)")


def median_ms(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def bench_pages(client) -> None:
    from django.db import connection

    from sessions_app.models import UserSession

    session = UserSession.objects.filter(neuron__slug=SLUG).order_by("-id").first()
    deep = UserSession.objects.filter(neuron__slug=SLUG).order_by("id").values_list("id", flat=True)[1000]

    def get(url: str):
        def run():
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
            assert b'data-testid="form-errors"' not in response.content, url

        return run

    def baseline():
        with connection.cursor() as cursor:
            cursor.execute("SELECT event_type, count(*) FROM behavior_events GROUP BY event_type")
            cursor.fetchall()

    events = connection.cursor()
    events.execute("SELECT count(*) FROM behavior_events")
    total = events.fetchone()[0]
    base = median_ms(baseline)
    print(f"\npage loads over {total:,} events (in process, median of 5; the overview has a 7-day range report)")
    print(f"  baseline: raw SQL events-by-type GROUP BY      {base:8.1f} ms")
    for label, url in [
        ("overview /dashboard/", "/dashboard/"),
        ("explorer, first page", f"/dashboard/sessions/?neuron={SLUG}"),
        ("explorer, deep keyset page", f"/dashboard/sessions/?neuron={SLUG}&after={deep}"),
        ("explorer, filtered", f"/dashboard/sessions/?neuron={SLUG}&country=FR&device=mobile"),
        ("session page", f"/dashboard/sessions/{session.public_id}/"),
        ("privacy centre (30 days)", "/dashboard/privacy/"),
        ("overview, 30-day range report", "/dashboard/?range=30d"),
        ("funnels, 3 steps (7 days)", f"/dashboard/funnels/?step=page:/&step=page:/pricing&step={FUNNEL_LAST}"),
        ("journeys after / (7 days)", "/dashboard/journeys/?page=/"),
        ("retention, daily cohorts (30 days)", "/dashboard/retention/"),
        ("segments and archetypes (7 days)", "/dashboard/segments/"),
    ]:
        ms = median_ms(get(url))
        print(f"  {label:<44} {ms:8.1f} ms   ratio to baseline {ms / base:5.2f}")


def staff_cookie(user) -> str:
    """A logged-in session for `user` in the configured session store, as a Cookie header."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.save()
    return f"{settings.SESSION_COOKIE_NAME}={store.session_key}"


def wait_for_event(ws, name: str, deadline: float) -> tuple[bool, int]:
    """Read snapshots until one lists the event `name` or the deadline passes: (seen, snapshots read)."""
    snapshots = 0
    while (remaining := deadline - time.perf_counter()) > 0:
        try:
            message = json.loads(ws.recv(timeout=remaining))
        except TimeoutError:
            break
        if message.get("type") != "snapshot":
            continue
        snapshots += 1
        if any(e["name"] == name for e in message["data"]["recentEvents"]):
            return True, snapshots
    return False, snapshots


def bench_push(env: dict[str, str], port: int, pushes: int, user, neuron_key: str) -> None:
    """Post an event, time until a dashboard websocket shows it; each push waits at most PUSH_TIMEOUT.

    The ticker that feeds dashboards is elected through a lease in the cache, and broadcasts to a
    channel group: both live under CACHE_KEY_PREFIX in Redis. A process of another deployment
    (another database) sharing that Redis database and prefix can hold the lease; this server's
    dashboards then get that process's snapshots, which never list this server's events. Earlier
    versions of this step read such snapshots forever and printed nothing; the bench now runs
    under its own prefix, bounds every wait, and names the cause when it happens.
    """
    import httpx
    from django.conf import settings
    from websockets.sync.client import connect

    cookie = staff_cookie(user)
    latencies: list[float] = []
    missed = 0
    snapshots_while_missing = 0
    with Server("uvicorn", port, env) as server:
        api = httpx.Client(base_url=server.url, timeout=10)
        created = api.post(
            "/api/sessions/create", json={"consent": {"analytics": True}}, headers={"X-Site-Key": neuron_key}
        ).json()
        headers = {"Authorization": f"Bearer {created['token']}"}
        with connect(
            f"ws://127.0.0.1:{port}/ws/dashboard/",
            additional_headers={"Cookie": cookie, "Origin": server.url},
            open_timeout=10,
        ) as ws:
            first = json.loads(ws.recv(timeout=10))  # sent by the consumer on connect, before any tick
            assert first.get("type") == "snapshot", first
            for i in range(pushes):
                name = f"bench push {os.getpid()}-{i}"
                t0 = time.perf_counter()
                response = api.post(
                    f"/api/sessions/{created['sessionId']}/events",
                    json={"eventType": "track", "eventName": name, "page": {"path": "/bench"}},
                    headers=headers,
                )
                assert response.status_code < 300, response.text
                seen, snapshots = wait_for_event(ws, name, t0 + PUSH_TIMEOUT)
                if seen:
                    latencies.append((time.perf_counter() - t0) * 1000)
                else:
                    missed += 1
                    snapshots_while_missing += snapshots
                time.sleep(0.37)  # de-phase from the tick so the samples cover the whole interval
    tick = settings.DASHBOARD_TICK_SECONDS * 1000
    print(f"\nlive push: event accepted by the API -> visible on a dashboard websocket ({pushes} pushes)")
    if latencies:
        latencies.sort()
        print(
            f"  p50 {statistics.median(latencies):7.0f} ms   p95 {latencies[int(0.95 * (len(latencies) - 1))]:7.0f} ms"
            f"   max {latencies[-1]:7.0f} ms   baseline: tick interval {tick:.0f} ms"
        )
    if missed:
        print(f"  {missed} of {pushes} events never arrived within {PUSH_TIMEOUT:.0f} s")
        if snapshots_while_missing:
            print(
                "  snapshots kept arriving without them: another process sharing this Redis database and"
                f" CACHE_KEY_PREFIX ({settings.CACHES['default'].get('KEY_PREFIX')!r}) holds the ticker lease"
            )
        else:
            print("  no snapshot arrived at all: is the ticker running (DASHBOARD_TICK_SECONDS) and Redis reachable?")
    met = bool(latencies) and not missed and latencies[-1] < 2000
    print(f"  target < 2000 ms: {'meets' if met else 'MISSES'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--pushes", type=int, default=20)
    parser.add_argument("--port", type=int, default=8175)
    parser.add_argument("--steps", default="export,pages,push", help="which figures to take (comma-separated)")
    args = parser.parse_args()
    steps = set(args.steps.split(","))
    # Its own key prefix: the ticker lease and the channel group must not be shared with a
    # test run or another server using the same Redis database.
    env = bench_env(CACHE_KEY_PREFIX=f"spe-bench-{os.getpid()}")
    if not env.get("DATABASE_URL"):
        sys.exit("bench/dashboard.py seeds with COPY: set DATABASE_URL to a PostgreSQL database")
    setup_django(env)
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)
    print(f"PostgreSQL {'+ Redis' if env.get('REDIS_URL') else '(local-memory cache)'}; shared 2-core machine")
    neuron, creds = seed(args.sessions, args.events)
    rollups()
    client, user = staff_client()
    if "export" in steps:
        bench_export(client, args.sessions)
    if "pages" in steps:
        bench_pages(client)
    from django.db import connection

    connection.close()
    if "push" in steps:
        bench_push(env, args.port, args.pushes, user, neuron.publishable_key)


if __name__ == "__main__":
    main()
