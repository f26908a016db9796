"""Shared benchmark plumbing: start a server on loopback, drive it open-loop or flat out."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Figures:
    label: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    # Percentiles reported by a native client instead of every latency.
    percentiles: dict[float, float] | None = None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        if self.percentiles and p in self.percentiles:
            return self.percentiles[p]
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(round(p / 100 * (len(data) - 1))))]

    def line(self) -> str:
        return (
            f"{self.label:<42} {self.rate:>9.0f} req/s   p50 {self.pct(50):>7.2f} ms   "
            f"p99 {self.pct(99):>7.2f} ms   errors {self.errors}"
        )


def bench_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings", "PYTHONWARNINGS": "ignore", **extra}
    env.setdefault("FIELD_ENCRYPTION_KEYS", "YmVuY2gtb25seS1rZXktMzItYnl0ZXMtbG9uZy4uLi4=")
    return env


def manage(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return result.stdout


class Server:
    """uvicorn (ASGI, one worker) or gunicorn (WSGI, N sync workers) on 127.0.0.1."""

    def __init__(self, kind: str, port: int, env: dict[str, str], workers: int = 1) -> None:
        self.kind, self.port, self.env, self.workers = kind, port, env, workers
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        venv_bin = Path(sys.executable).parent
        if self.kind == "uvicorn":
            cmd = [
                str(venv_bin / "uvicorn"),
                "config.asgi:application",
                "--host=127.0.0.1",
                f"--port={self.port}",
                "--no-access-log",
                "--log-level=warning",
                f"--workers={self.workers}",
            ]
        else:
            cmd = [
                str(venv_bin / "gunicorn"),
                "config.wsgi:application",
                f"--bind=127.0.0.1:{self.port}",
                f"--workers={self.workers}",
                "--log-level=warning",
            ]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"{self.kind} did not start on port {self.port}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


RequestFn = Callable[[httpx.AsyncClient], "asyncio.Future"]


async def _timed(client: httpx.AsyncClient, make: Callable, start: float, figures: Figures, ok: set[int]) -> None:
    try:
        response = await make(client)
        if response.status_code not in ok:
            figures.errors += 1
    except httpx.HTTPError:
        figures.errors += 1
    figures.latencies_ms.append((time.perf_counter() - start) * 1000)


async def fixed_rate(
    label: str, base_url: str, make: Callable, *, rate: float, seconds: float, ok: set[int]
) -> Figures:
    """Open loop: request i is due at t0 + i/rate; latency counts from when it was due
    (so a server that falls behind shows it, no coordinated omission)."""
    figures = Figures(label, 0, 0, seconds, [])
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        t0 = time.perf_counter()
        tasks = []
        total = int(rate * seconds)
        for i in range(total):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_timed(client, make, due, figures, ok)))
        await asyncio.gather(*tasks)
        figures.seconds = time.perf_counter() - t0
        figures.requests = total
    return figures


async def flat_out(
    label: str, base_url: str, make: Callable, *, concurrency: int, seconds: float, ok: set[int]
) -> Figures:
    """Closed loop: `concurrency` clients send back to back for `seconds`."""
    figures = Figures(label, 0, 0, seconds, [])
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < stop:
                await _timed(client, make, time.perf_counter(), figures, ok)
                figures.requests += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        figures.seconds = time.perf_counter() - t0
    return figures


def summary_stats(values: list[float]) -> str:
    return f"mean {statistics.mean(values):.2f}" if values else "n/a"
