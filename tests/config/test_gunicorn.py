"""Server processes: gunicorn's settings file preloads and serves; long-lived objects leave the GC."""

from __future__ import annotations

import asyncio
import gc
import os
import runpy
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from config.gc_freeze import FreezeAfterWarmUp, FreezeAfterWarmUpASGI, gc_freeze

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "gunicorn.conf.py"


def _settings(**env: str) -> dict:
    old = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        return runpy.run_path(str(CONFIG))
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_settings_follow_the_environment():
    conf = _settings(WEB_CONCURRENCY="3", GUNICORN_THREADS="4", GUNICORN_BIND="0.0.0.0:9000")
    assert (conf["workers"], conf["threads"], conf["bind"]) == (3, 4, "0.0.0.0:9000")
    assert conf["worker_class"] == "gthread" and conf["preload_app"] is True
    assert conf["limit_request_line"] == 8190


def test_the_master_freezes_before_forking():
    conf = _settings()
    try:
        gc.unfreeze()
        conf["pre_fork"](None, None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_a_process_freezes_once_after_its_first_requests():
    warm_up = FreezeAfterWarmUp(after=3)
    try:
        gc.unfreeze()
        for _ in range(2):
            warm_up.request_finished()
        assert gc.get_freeze_count() == 0  # not yet: the long-lived objects are still being made
        warm_up.request_finished()
        assert gc.get_freeze_count() > 0 and warm_up.frozen
        gc.unfreeze()
        warm_up.request_finished()
        assert gc.get_freeze_count() == 0  # once per process
    finally:
        gc.unfreeze()


def test_the_asgi_wrapper_counts_requests_even_when_they_fail():
    calls = []

    async def app(scope, receive, send):
        calls.append(scope["type"])
        if len(calls) == 2:
            raise RuntimeError("the app failed")

    wrapped = FreezeAfterWarmUpASGI(app, after=2)
    try:
        gc.unfreeze()
        asyncio.run(wrapped({"type": "http"}, None, None))
        try:
            asyncio.run(wrapped({"type": "http"}, None, None))
        except RuntimeError:
            pass
        assert calls == ["http", "http"] and wrapped.warm_up.frozen and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_gc_freeze_collects_garbage_first():
    gc.unfreeze()
    try:
        cycle = []
        cycle.append(cycle)
        del cycle
        gc_freeze()
        assert gc.collect() == 0  # nothing left for the collector: the cycle went before the freeze
    finally:
        gc.unfreeze()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_gunicorn_starts_with_the_settings_file_and_serves():
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": "", "REDIS_URL": "", "CELERY_BROKER_URL": "", "GC_FREEZE_AFTER_REQUESTS": "2"}
    env["SQLITE_PATH"] = str(ROOT / f"gunicorn-test-{port}.sqlite3")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            f"--config={CONFIG}",
            "config.wsgi:application",
            f"--bind=127.0.0.1:{port}",
            "--workers=2",
            "--log-level=warning",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, "gunicorn exited"
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        assert response.status_code == 200
        for _ in range(6):  # past the freeze threshold of both workers: still serving
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        # A long query string (filters) is served up to the 8 KB request line; beyond it, a 414.
        long_query = f"http://127.0.0.1:{port}/healthz?q=" + "x" * 6000
        assert httpx.get(long_query, timeout=5).status_code == 200
        assert httpx.get(long_query + "x" * 3000, timeout=5).status_code == 414
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        Path(env["SQLITE_PATH"]).unlink(missing_ok=True)
