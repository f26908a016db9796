"""Shared benchmark plumbing: start a server on loopback, drive it open-loop or flat out."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
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
    # The server's own CPU time per request (all its processes), when measured.
    cpu_ms: float | None = None
    # The local PostgreSQL server's CPU time per request (all its processes), when measured.
    db_cpu_ms: float | None = None

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
        cpu = f"   server CPU {self.cpu_ms:.2f} ms/req" if self.cpu_ms is not None else ""
        if self.db_cpu_ms is not None:
            cpu += f"   database CPU {self.db_cpu_ms:.2f}"
        return (
            f"{self.label:<42} {self.rate:>9.0f} req/s   p50 {self.pct(50):>7.2f} ms   "
            f"p99 {self.pct(99):>7.2f} ms   errors {self.errors}{cpu}"
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
    """uvicorn (ASGI, N workers), gunicorn (WSGI, N sync workers) or gthread (gunicorn, N
    workers of `threads` threads each) on 127.0.0.1."""

    def __init__(self, kind: str, port: int, env: dict[str, str], workers: int = 1, threads: int = 8) -> None:
        self.kind, self.port, self.env, self.workers, self.threads = kind, port, env, workers, threads
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
                "--config=config/gunicorn.conf.py",  # the production settings (GC freeze, preload)
                "config.wsgi:application",
                f"--bind=127.0.0.1:{self.port}",
                f"--workers={self.workers}",
                "--log-level=warning",
            ]
            if self.kind == "gthread":
                # Threads overlap the database waits of one process; WSGI costs a third of
                # ASGI's CPU per request (bench server CPU figures).
                cmd += ["--worker-class=gthread", f"--threads={self.threads}"]
            else:
                cmd += ["--worker-class=sync"]
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

    def cpu_seconds(self) -> float:
        """User + system CPU of every process of the server (its process group), from /proc.
        Per request, it is the server's cost whatever else loads the machine."""
        if self.proc is None:
            return 0.0
        pgrp = self.proc.pid  # start_new_session: the server's process group
        return processes_cpu_seconds(lambda name, group: group == pgrp)

    def measure(self, run: Callable[[], Figures]) -> Figures:
        """Run `run` and attach the server's and the local PostgreSQL's CPU time per request
        to its figures (the latter counts every database on that server: run on a quiet one)."""
        before, db_before = self.cpu_seconds(), postgres_cpu_seconds()
        figures = run()
        if figures.requests:
            figures.cpu_ms = (self.cpu_seconds() - before) / figures.requests * 1000
            if db_before:
                figures.db_cpu_ms = (postgres_cpu_seconds() - db_before) / figures.requests * 1000
        return figures

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def processes_cpu_seconds(select: Callable[[str, int], bool]) -> float:
    """User + system CPU seconds of the processes `select(name, process_group)` picks, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                head, tail = handle.read().rsplit(")", 1)
        except OSError:
            continue
        fields = tail.split()
        if select(head.split("(", 1)[1], int(fields[2])):
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / ticks


def postgres_cpu_seconds() -> float:
    """CPU of the PostgreSQL server processes on this machine (0 when there are none)."""
    return processes_cpu_seconds(lambda name, group: name == "postgres")


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


async def _raw_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> tuple[int, bool]:
    """Send one request, read its answer: (status, whether the connection stays open)."""
    writer.write(data)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    close = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    if length:
        await reader.readexactly(length)
    return status, not close


async def fixed_rate_raw(
    label: str,
    base_url: str,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: str | None = None,
    rate: float,
    seconds: float,
    ok: set[int],
    seq: str | None = None,
    max_connections: int = 256,
    variants: list[tuple[str, dict[str, str]]] | None = None,
) -> Figures:
    """Open loop like `fixed_rate`, on raw asyncio streams (HTTP/1.1 keep-alive, no httpx).

    httpx costs about a millisecond of CPU per request: on a busy 2-core machine the client
    itself fell behind 200 requests/s and its queue showed up as seconds of "latency" even
    for the bare view. This client formats each request from bytes (`seq`, when given, is
    replaced in the body by a number unique to the run) and keeps idle connections in a pool,
    opening another only when all are busy. Latency counts from when the request was due.
    """
    host, port = base_url.removeprefix("http://").split(":")
    figures = Figures(label, 0, 0, seconds, [])
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    opened = 0
    slots = asyncio.Semaphore(max_connections)
    heads = []
    for variant_path, extra in variants or [(path, {})]:
        merged = {**(headers or {}), **extra}
        head = [f"{method} {variant_path} HTTP/1.1", f"Host: {host}:{port}"]
        heads.append(head + [f"{key}: {value}" for key, value in merged.items()])
    run = uuid.uuid4().hex[:8]

    def request_bytes(i: int) -> bytes:
        head = heads[i % len(heads)]
        if body is None:
            return ("\r\n".join(head) + "\r\n\r\n").encode()
        payload = (body.replace(seq, f"{run}-{i}") if seq else body).encode()
        return ("\r\n".join([*head, f"Content-Length: {len(payload)}"]) + "\r\n\r\n").encode() + payload

    async def one(i: int, due: float) -> None:
        nonlocal opened
        async with slots:
            conn = idle.pop() if idle else None
            try:
                if conn is not None:
                    try:
                        status, keep = await _raw_request(*conn, request_bytes(i))
                    except (OSError, asyncio.IncompleteReadError):
                        # The server closed this idle keep-alive connection: retry on a new one.
                        conn[1].close()
                        conn = None
                if conn is None:
                    conn = await asyncio.open_connection(host, int(port))
                    opened += 1
                    status, keep = await _raw_request(*conn, request_bytes(i))
                if status not in ok:
                    figures.errors += 1
                if keep:
                    idle.append(conn)
                else:  # gunicorn's sync workers close after every answer
                    conn[1].close()
            except (OSError, asyncio.IncompleteReadError, ValueError):
                figures.errors += 1
                if conn is not None:
                    conn[1].close()
            figures.latencies_ms.append((time.perf_counter() - due) * 1000)

    t0 = time.perf_counter()
    tasks = []
    total = int(rate * seconds)
    for i in range(total):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    figures.seconds = time.perf_counter() - t0
    figures.requests = total
    for _reader, writer in idle:
        writer.close()
    return figures
