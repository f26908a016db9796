"""Session creation throughput and latency against a bare Django JSON view, measured in one run.

    python bench/session_create.py [--seconds 10] [--rate 200] [--concurrency 16] [--server uvicorn|gthread|gunicorn]
        [--workers N]

Starts the server on loopback (PostgreSQL when DATABASE_URL is set, SQLite otherwise): by
default the ASGI server (uvicorn, config/asgi.py, as `make run` serves); `--server gthread`
is gunicorn with config/gunicorn.conf.py (the production HTTP API),
then for each of the bare view (`/bench/bare`) and `POST /api/sessions/create`:
a fixed-rate run (open loop, default 200 req/s) and a flat-out run. Prints req/s,
p50/p99 and our rate as a fraction of the bare view's. Target: create p99 < 100 ms at 200 req/s.
Flat-out runs use wrk when it is installed (`make bench-tools`; see bench/native.py), so
the client does not take the server's CPU; fixed-rate runs use a lean open-loop client on
raw asyncio streams (bench/common.py fixed_rate_raw).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Server, bench_env, fixed_rate_raw, manage  # noqa: E402
from bench.native import client_name, flat_out_any  # noqa: E402

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--server", choices=["uvicorn", "gthread", "gunicorn"], default="uvicorn")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8, help="threads per gthread worker")
    parser.add_argument("--port", type=int, default=8191)
    args = parser.parse_args()

    env = bench_env()
    if not env.get("DATABASE_URL"):
        env["SQLITE_PATH"] = str(Path(__file__).resolve().parent.parent / "bench-sessions.sqlite3")
    manage("migrate", "--noinput", env=env)
    slug = f"bench-{os.getpid()}"
    key = json.loads(manage("create_neuron", slug, "--name", "Benchmark", env=env))["publishableKey"]
    body = {"consent": {"analytics": True}, "landingPage": "/pricing", "utm": {"source": "bench"}}
    headers = {"X-Site-Key": key, "User-Agent": UA, "Content-Type": "application/json"}
    payload = json.dumps(body)

    def create(client):
        return client.post("/api/sessions/create", content=payload, headers=headers)

    def bare(client):
        return client.get("/bench/bare")

    database = "PostgreSQL" if env.get("DATABASE_URL") else "SQLite"
    server = f"{args.server} x{args.workers} (threads {args.threads})"
    print(f"server: {server}, database: {database}, {args.seconds:.0f}s per run")
    print(f"client: {client_name()}; load average before: {os.getloadavg()[0]:.1f}")
    requests = (
        ("bare Django JSON view", bare, {200}, {"path": "/bench/bare"}),
        (
            "POST /api/sessions/create",
            create,
            {201},
            {"path": "/api/sessions/create", "method": "POST", "headers": headers, "body": payload},
        ),
    )
    with Server(args.server, args.port, env, workers=args.workers, threads=args.threads) as server:
        runs = []
        for label, make, ok, request in requests:
            asyncio.run(fixed_rate_raw("warm-up", server.url, rate=50, seconds=1, ok=ok, **request))
            fixed = server.measure(
                lambda label=label, ok=ok, request=request: asyncio.run(
                    fixed_rate_raw(
                        f"{label} @ {args.rate:.0f}/s",
                        server.url,
                        rate=args.rate,
                        seconds=args.seconds,
                        ok=ok,
                        **request,
                    )
                )
            )
            flat = server.measure(
                lambda label=label, make=make, ok=ok, request=request: flat_out_any(
                    f"{label} flat out (c={args.concurrency})",
                    server.url,
                    make=make,
                    concurrency=args.concurrency,
                    seconds=args.seconds,
                    ok=ok,
                    **request,
                )
            )
            runs.append((fixed, flat))
    for fixed, flat in runs:
        print(fixed.line())
        print(flat.line())
    (bare_fixed, bare_flat), (create_fixed, create_flat) = runs
    print(f"create / bare flat-out rate: {create_flat.rate / bare_flat.rate:.2f}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    verdict = "meets" if create_fixed.pct(99) < 100 and create_fixed.errors == 0 else "MISSES"
    print(f"target p99 < 100 ms at {args.rate:.0f}/s: {verdict} ({create_fixed.pct(99):.1f} ms)")


if __name__ == "__main__":
    main()
