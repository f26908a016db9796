"""CPU time and queries per request on the hot paths, in-process (no server, no load generator).

    DATABASE_URL=postgres://.../scratch python bench/hotpath_cpu.py [--requests 300] [--profile create|single|batch]

Drives the full Django stack (middleware, DRF, services, the database) through the WSGI
handler with the test client, one request at a time, and prints for each of the bare
view, session creation, one event and a batch of 100 events: process CPU ms per request
(time.process_time, so other load on a shared machine does not count, only this
process's own work), wall ms, and database round trips per request. `--profile NAME`
prints the top of a cProfile of that case, in process CPU time (waits on the database do
not count). Figures are per request on one core; the server's throughput ceiling is
roughly cores / (CPU ms + the database's CPU ms).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_env  # noqa: E402

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--profile", choices=["bare", "create", "single", "batch", "segment"], default=None)
    parser.add_argument("--top", type=int, default=35)
    args = parser.parse_args()

    os.environ.update({k: v for k, v in bench_env().items() if k not in os.environ or k.startswith("DJANGO")})
    if not os.environ.get("DATABASE_URL"):
        os.environ.setdefault("SQLITE_PATH", str(Path(__file__).resolve().parent.parent / "bench-cpu.sqlite3"))
    import django

    django.setup()
    import orjson
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from federation.services import neuron_create

    call_command("migrate", verbosity=0)
    neuron = neuron_create(slug=f"cpu-{uuid.uuid4().hex[:8]}", name="CPU benchmark").neuron
    client = Client(HTTP_USER_AGENT=UA, REMOTE_ADDR="81.2.69.142")
    create_body = orjson.dumps({"consent": {"analytics": True}, "landingPage": "/pricing", "utm": {"source": "bench"}})

    def create():
        response = client.post(
            "/api/sessions/create", create_body, content_type="application/json", HTTP_X_SITE_KEY=neuron.publishable_key
        )
        assert response.status_code == 201, response.content
        return response

    body = orjson.loads(create().content)
    sid, auth = body["sessionId"], f"Bearer {body['token']}"
    run = uuid.uuid4().hex[:8]
    counter = iter(range(10**9))

    def event(i: int) -> dict:
        return {
            "eventType": "page_view" if i % 4 == 0 else "click",
            "eventName": "bench",
            "eventData": {"i": i, "variant": "b", "price": 12.5},
            "page": {"url": f"https://shop.example.com/p/{i % 50}", "title": "Product"},
            "timestamp": "2026-11-29T12:00:00.000Z",
            "messageId": f"{run}-{next(counter)}",
        }

    def single():
        response = client.post(
            f"/api/sessions/{sid}/events",
            orjson.dumps(event(1)),
            content_type="application/json",
            HTTP_AUTHORIZATION=auth,
        )
        assert response.status_code == 200, response.content

    def batch():
        payload = orjson.dumps({"events": [event(i) for i in range(100)]})
        response = client.post(
            f"/api/sessions/{sid}/events", payload, content_type="application/json", HTTP_AUTHORIZATION=auth
        )
        assert response.status_code == 200, response.content

    def bare():
        assert client.get("/bench/bare").status_code == 200

    write_key = neuron.publishable_key

    def segment():
        payload = orjson.dumps(
            {
                "type": "track",
                "event": "Bench",
                "anonymousId": "cpu-bench",
                "writeKey": write_key,
                "context": {"consent": {"categoryPreferences": {"analytics": True}}},
                "messageId": f"{run}-s{next(counter)}",
            }
        )
        response = client.post("/v1/track", payload, content_type="application/json")
        assert response.status_code == 200, response.content

    cases = {"bare": bare, "create": create, "single": single, "batch": batch, "segment": segment}
    import federation

    code = Path(federation.__file__).resolve().parent.parent
    print(f"code: {code}, database: {connection.vendor}, {args.requests} requests per case, one at a time")
    for name, fn in cases.items():
        n = args.requests if name != "batch" else max(20, args.requests // 5)
        for _ in range(10):
            fn()  # warm-up: imports, caches, connection
        with CaptureQueriesContext(connection) as ctx:
            fn()
        queries = len(ctx.captured_queries)
        profiler = cProfile.Profile(time.process_time) if args.profile == name else None
        wall0, cpu0 = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        for _ in range(n):
            fn()
        if profiler:
            profiler.disable()
        cpu = (time.process_time() - cpu0) / n * 1000
        wall = (time.perf_counter() - wall0) / n * 1000
        print(f"{name:<8} CPU {cpu:6.2f} ms/request   wall {wall:6.2f} ms   queries {queries}")
        if profiler:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.top)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
