"""Event ingestion throughput and latency, with the baselines measured in the same run.

    DATABASE_URL=postgres://... python bench/ingest.py [--seconds 10] [--concurrency 16]
        [--server gthread|uvicorn|gunicorn] [--workers 2] [--port 8120] [--rate 200]

Against PostgreSQL (DATABASE_URL is required), on loopback:

1. batched: `--concurrency` clients, each with its own session, send batches of 100
   events flat out for `--seconds`; then the stored row count is checked against the
   accepted count (sum of `stored` in 2xx answers). Prints events/s and p50/p99 per request.
2. baseline: raw psycopg COPY of the same rows into a scratch copy of behavior_events
   (same indexes and unique constraint), one COPY + commit per 100 rows, from one
   connection; our batched rate is printed as a fraction of it.
3. single events: one event per request against the bare Django JSON view
   (`/bench/bare`) and an "ideal ingest view" (`/bench/ideal-ingest`: token lookup and one
   INSERT, nothing else; bench/urls.py), flat out, and at a fixed `--rate` (open loop)
   for the p99; the events go to `--single-sessions` sessions in turn (visitors: one
   session's events are serialised by its row lock; the ideal view gets sessions of its own),
   and then the stored rows of those sessions are checked against their event counters (every
   stored event counted exactly once). Flat-out runs use wrk when installed
   (`make bench-tools`, bench/native.py), so the client does not take the server's CPU;
   fixed-rate runs a lean open-loop client on raw asyncio streams (bench/common.py).

Targets: batched >= 10,000 events/s and >= 1/3 of the COPY rate; single events >= 60 %
of the bare view's request rate with p99 < 50 ms at 200 requests/s. Figures from a
shared 2-core machine vary by +-20 % between runs; compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Figures, Server, bench_env, fixed_rate_raw, manage  # noqa: E402
from bench.native import SEQ, client_name, flat_out_any  # noqa: E402

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
BATCH = 100
COPY_COLUMNS = (
    "neuron_id, session_id, profile_id, anonymous_id, event_type, event_name, properties, page_url, "
    "page_path, page_title, referrer, timestamp, received_at, message_id"
)


def event(message_id: str, i: int) -> dict:
    return {
        "eventType": "page_view" if i % 4 == 0 else "click",
        "eventName": "bench",
        "eventData": {"i": i, "variant": "b", "price": 12.5},
        "page": {"url": f"https://shop.example.com/p/{i % 50}", "title": "Product"},
        "timestamp": "2026-11-29T12:00:00.000Z",
        "messageId": message_id,
    }


def sessions_create(base_url: str, key: str, count: int) -> list[tuple[str, str]]:
    out = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for _ in range(count):
            response = client.post(
                "/api/sessions/create",
                json={"consent": {"analytics": True}},
                headers={"X-Site-Key": key, "User-Agent": UA},
            )
            response.raise_for_status()
            body = response.json()
            out.append((body["sessionId"], body["token"]))
    return out


async def batched(base_url: str, sessions: list[tuple[str, str]], seconds: float) -> tuple[Figures, int]:
    """Each client owns one session and sends 100-event batches back to back."""
    figures = Figures(f"batches of {BATCH} events, c={len(sessions)}", 0, 0, seconds, [])
    accepted = 0
    run = uuid.uuid4().hex[:8]
    limits = httpx.Limits(max_connections=len(sessions), max_keepalive_connections=len(sessions))
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        stop = time.perf_counter() + seconds

        async def worker(index: int, session_id: str, token: str) -> None:
            nonlocal accepted
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "User-Agent": UA}
            url = f"/api/sessions/{session_id}/events"
            for seq in itertools.count():
                if time.perf_counter() >= stop:
                    return
                body = orjson.dumps(
                    {
                        "sentAt": datetime.now(UTC).isoformat(),
                        "events": [event(f"{run}-{index}-{seq}-{i}", i) for i in range(BATCH)],
                    }
                )
                start = time.perf_counter()
                try:
                    response = await client.post(url, content=body, headers=headers)
                    if response.status_code == 200:
                        accepted += response.json()["stored"]
                    else:
                        figures.errors += 1
                except httpx.HTTPError:
                    figures.errors += 1
                figures.latencies_ms.append((time.perf_counter() - start) * 1000)
                figures.requests += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(i, sid, tok) for i, (sid, tok) in enumerate(sessions)))
        figures.seconds = time.perf_counter() - t0
    return figures, accepted


def stored_rows(dsn: str, session_ids: list[str]) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT count(*) FROM behavior_events e JOIN user_sessions s ON s.id = e.session_id "
            "WHERE s.public_id = ANY(%s::uuid[])",
            [session_ids],
        ).fetchone()[0]


def stored_and_counted(dsn: str, session_ids: list[str]) -> tuple[int, int]:
    """Stored event rows of the sessions, and the sum of their event counters (equal when every
    stored event was counted exactly once)."""
    with psycopg.connect(dsn) as conn:
        rows = stored_rows(dsn, session_ids)
        (counted,) = conn.execute(
            "SELECT coalesce(sum(event_count), 0) FROM user_sessions WHERE public_id = ANY(%s::uuid[])", [session_ids]
        ).fetchone()
    return rows, counted


def copy_baseline(dsn: str, rows: int) -> float:
    """Raw psycopg COPY of event rows into a scratch copy of behavior_events, 100 per commit."""
    now = datetime.now(UTC)
    with psycopg.connect(dsn) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_copy_events")
        conn.execute("CREATE TABLE bench_copy_events (LIKE behavior_events INCLUDING ALL)")
        neuron_id, session_id = conn.execute(
            "SELECT neuron_id, id FROM user_sessions ORDER BY id DESC LIMIT 1"
        ).fetchone()
        conn.commit()
        run = uuid.uuid4().hex[:8]
        t0 = time.perf_counter()
        for start in range(0, rows, BATCH):
            with conn.cursor() as cur, cur.copy(f"COPY bench_copy_events ({COPY_COLUMNS}) FROM STDIN") as copy:
                for i in range(start, start + BATCH):
                    e = event(f"{run}-{i}", i)
                    copy.write_row(
                        (
                            neuron_id,
                            session_id,
                            None,
                            "anon",
                            e["eventType"],
                            e["eventName"],
                            json.dumps(e["eventData"]),
                            e["page"]["url"],
                            f"/p/{i % 50}",
                            e["page"]["title"],
                            "",
                            now,
                            now,
                            e["messageId"],
                        )
                    )
            conn.commit()
        elapsed = time.perf_counter() - t0
        conn.execute("DROP TABLE bench_copy_events")
        conn.commit()
    return rows / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=200)
    # The open-loop run queues every request that falls due: on an overloaded machine
    # a long one only measures the queue, so it is kept shorter than the others.
    parser.add_argument("--fixed-seconds", type=float, default=5)
    parser.add_argument("--server", choices=["gthread", "uvicorn", "gunicorn"], default="gthread")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8, help="threads per gthread worker")
    parser.add_argument("--port", type=int, default=8120)
    parser.add_argument("--copy-rows", type=int, default=100_000)
    parser.add_argument("--single-sessions", type=int, default=16, help="sessions the single events go to in turn")
    parser.add_argument("--singles-only", action="store_true", help="skip the batches and the COPY baseline")
    args = parser.parse_args()

    env = bench_env()
    dsn = env.get("DATABASE_URL")
    if not dsn:
        sys.exit("bench/ingest.py measures PostgreSQL: set DATABASE_URL")
    manage("migrate", "--noinput", env=env)
    slug = f"bench-ingest-{os.getpid()}"
    key = json.loads(manage("create_neuron", slug, "--name", "Ingestion benchmark", env=env))["publishableKey"]

    print(f"server: {args.server} x{args.workers} (threads {args.threads}), PostgreSQL, {args.seconds:.0f}s per run")
    print(f"client: {client_name()} (batches: Python httpx); load average before: {os.getloadavg()[0]:.1f}")
    with Server(args.server, args.port, env, workers=args.workers, threads=args.threads) as server:
        sessions = sessions_create(server.url, key, args.concurrency + 2 * args.single_sessions)
        singles_n = args.single_sessions
        # Our single events and the ideal view's go to sessions of their own, so the rows of ours
        # can be checked against their sessions' counters afterwards.
        single_sessions, ideal_sessions = sessions[:singles_n], sessions[singles_n : 2 * singles_n]
        batch_sessions = sessions[2 * singles_n :]
        if not args.singles_only:
            asyncio.run(batched(server.url, batch_sessions, 1))  # warm-up
            before = stored_rows(dsn, [sid for sid, _ in batch_sessions])
            cpu_before = server.cpu_seconds()
            batch_figures, accepted = asyncio.run(batched(server.url, batch_sessions, args.seconds))
            if batch_figures.requests:
                batch_figures.cpu_ms = (server.cpu_seconds() - cpu_before) / batch_figures.requests * 1000
            rows = stored_rows(dsn, [sid for sid, _ in batch_sessions]) - before

        single_headers = {"Content-Type": "application/json", "User-Agent": UA}
        counter = itertools.count()
        run = uuid.uuid4().hex[:8]
        # The same event for the Python client and for wrk, whose Lua script numbers {SEQ}.
        template = orjson.dumps(event(SEQ, 1)).decode()
        # Requests go to the sessions in turn (visitors), not all to one row lock.
        auth = [{"Authorization": f"Bearer {token}"} for _, token in single_sessions]
        ours = [(f"/api/sessions/{sid}/events", a) for (sid, _), a in zip(single_sessions, auth, strict=True)]
        ideal_auth = [{"Authorization": f"Bearer {token}"} for _, token in ideal_sessions]
        ideals = [("/bench/ideal-ingest", a) for a in ideal_auth]

        def one_event(client):
            n = next(counter)
            body = template.replace(SEQ, f"{run}-py-{n}")
            path, extra = ours[n % len(ours)]
            return client.post(path, content=body, headers={**single_headers, **extra})

        def ideal(client):
            n = next(counter)
            body = template.replace(SEQ, f"{run}-ideal-py-{n}")
            return client.post(
                "/bench/ideal-ingest", content=body, headers={**single_headers, **ideal_auth[n % len(ideal_auth)]}
            )

        def bare(client):
            return client.get("/bench/bare")

        post = {"method": "POST", "headers": single_headers, "body": template}
        singles = []
        for label, make, request in (
            ("bare Django JSON view", bare, {"path": "/bench/bare"}),
            ("ideal ingest view, one event", ideal, {"path": "/bench/ideal-ingest", "variants": ideals, **post}),
            ("POST /events, one event", one_event, {"path": ours[0][0], "variants": ours, **post}),
        ):
            asyncio.run(fixed_rate_raw("warm-up", server.url, rate=50, seconds=1, ok={200}, seq=SEQ, **request))
            fixed = server.measure(
                lambda label=label, request=request: asyncio.run(
                    fixed_rate_raw(
                        f"{label} @ {args.rate:.0f}/s",
                        server.url,
                        rate=args.rate,
                        seconds=args.fixed_seconds,
                        ok={200},
                        seq=SEQ,
                        **request,
                    )
                )
            )
            flat = server.measure(
                lambda label=label, make=make, request=request: flat_out_any(
                    f"{label} flat out (c={args.concurrency})",
                    server.url,
                    make=make,
                    concurrency=args.concurrency,
                    seconds=args.seconds,
                    ok={200},
                    run_id=f"{run}-{len(singles)}",
                    **request,
                )
            )
            singles.append((fixed, flat))
        single_rows, single_counted = stored_and_counted(dsn, [sid for sid, _ in single_sessions])
    print()
    if not args.singles_only:
        copy_rate = copy_baseline(dsn, args.copy_rows)
        events_rate = accepted / batch_figures.seconds
        print(batch_figures.line())
        print(
            f"  events/s accepted: {events_rate:,.0f}   accepted {accepted:,}   stored rows {rows:,}   "
            f"{'match' if rows == accepted else 'MISMATCH'}"
        )
        print(f"  raw psycopg COPY, one COPY + commit per {BATCH} rows: {copy_rate:,.0f} rows/s")
        print(f"  ingestion / COPY: {events_rate / copy_rate:.2f}   (target >= 0.33)")
        print(f"  target >= 10,000 events/s: {'meets' if events_rate >= 10_000 else 'MISSES'}")
    for fixed, flat in singles:
        print(fixed.line())
        print(flat.line())
    (bare_fixed, bare_flat), (ideal_fixed, ideal_flat), (one_fixed, one_flat) = singles
    answered = sum(f.requests - f.errors for f in (one_fixed, one_flat))
    # wrk stops with requests in flight: the server may store those without their answer being read.
    print(
        f"  single events: answered 200 {answered:,} (and a warm-up), stored rows {single_rows:,}, "
        f"sessions' event counts {single_counted:,}   {'match' if single_rows == single_counted else 'MISMATCH'}"
    )
    ratio = one_flat.rate / bare_flat.rate if bare_flat.rate else 0
    print(f"  single event / bare view flat-out rate: {ratio:.2f}   (target >= 0.60)")
    ideal_ratio = one_flat.rate / ideal_flat.rate if ideal_flat.rate else 0
    print(f"  single event / ideal ingest view flat-out rate: {ideal_ratio:.2f}")
    print(f"  load average after: {os.getloadavg()[0]:.1f}")
    verdict = "meets" if one_fixed.pct(99) < 50 and one_fixed.errors == 0 else "MISSES"
    print(f"  single-event p99 < 50 ms at {args.rate:.0f}/s: {verdict} ({one_fixed.pct(99):.1f} ms)")


if __name__ == "__main__":
    main()
