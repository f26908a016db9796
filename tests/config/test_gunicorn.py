"""config/gunicorn.conf.py: the app preloads and serves, and workers freeze their objects out of the GC."""

from __future__ import annotations

import gc
import os
import runpy
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "gunicorn.conf.py"


def _hooks(**env: str) -> dict:
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
    conf = _hooks(WEB_CONCURRENCY="3", GUNICORN_THREADS="4", GUNICORN_BIND="0.0.0.0:9000")
    assert (conf["workers"], conf["threads"], conf["bind"]) == (3, 4, "0.0.0.0:9000")
    assert conf["worker_class"] == "gthread" and conf["preload_app"] is True


def test_master_freezes_before_fork_and_each_worker_once_after_its_first_requests():
    conf = _hooks(GUNICORN_GC_FREEZE_AFTER="3")
    try:
        gc.unfreeze()
        conf["pre_fork"](None, None)
        assert gc.get_freeze_count() > 0
        gc.unfreeze()
        worker = SimpleNamespace(nr=2)
        conf["post_request"](worker, None, None, None)
        assert gc.get_freeze_count() == 0  # not yet: the worker's long-lived objects are still being made
        worker.nr = 4  # threads may finish out of order: past the threshold counts too
        conf["post_request"](worker, None, None, None)
        assert gc.get_freeze_count() > 0 and worker.gc_frozen
        gc.unfreeze()
        worker.nr = 5
        conf["post_request"](worker, None, None, None)
        assert gc.get_freeze_count() == 0  # once per worker
    finally:
        gc.unfreeze()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_gunicorn_starts_with_the_config_and_serves():
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": "", "REDIS_URL": "", "CELERY_BROKER_URL": "", "GUNICORN_GC_FREEZE_AFTER": "2"}
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
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        Path(env["SQLITE_PATH"]).unlink(missing_ok=True)
