"""The live dashboard against real servers: two uvicorn processes on channels-redis and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from websockets.sync.client import connect

from tests.federation.factories import NeuronFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")),
        reason="several server processes share state only through PostgreSQL and Redis",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
PORTS = (8172, 8173)


def start_server(port: int) -> subprocess.Popen:
    db = connection.settings_dict
    env = {
        **os.environ,
        # The servers read the test database pytest-django created, and the same Redis db.
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "DASHBOARD_TICK_SECONDS": "1",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_ready(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on {port} exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server on {port} did not start")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_an_event_posted_to_the_api_reaches_dashboards_on_every_server(staff_user):
    """An accepted event shows up on dashboards connected to two different server processes."""
    neuron = NeuronFactory()
    browser = Client()
    browser.force_login(staff_user)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"

    with ExitStack() as stack:
        servers = [start_server(port) for port in PORTS]
        for proc in servers:
            stack.callback(stop, proc)
        for port, proc in zip(PORTS, servers, strict=True):
            wait_ready(port, proc)

        sockets = [
            stack.enter_context(
                connect(
                    f"ws://127.0.0.1:{port}/ws/dashboard/",
                    additional_headers={"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"},
                    open_timeout=10,
                )
            )
            for port in PORTS
        ]
        baseline = [json.loads(ws.recv(timeout=5))["data"]["events"] for ws in sockets]

        api = httpx.Client(base_url=f"http://127.0.0.1:{PORTS[0]}", timeout=10)
        created = api.post(
            "/api/sessions/create",
            json={"consent": {"analytics": True}},
            headers={"X-Site-Key": neuron.publishable_key},
        )
        assert created.status_code == 201, created.text
        body = created.json()
        posted = api.post(
            f"/api/sessions/{body['sessionId']}/events",
            json={"eventType": "track", "eventName": "Live server signup", "page": {"path": "/signup"}},
            headers={"Authorization": f"Bearer {body['token']}"},
        )
        assert posted.status_code in (200, 201, 202), posted.text
        accepted_at = time.monotonic()

        ticks: list[list[str]] = []
        for ws, before in zip(sockets, baseline, strict=True):
            seen_ticks: list[str] = []
            while True:
                remaining = accepted_at + 10 - time.monotonic()
                assert remaining > 0, "the event never reached this dashboard"
                data = json.loads(ws.recv(timeout=remaining))["data"]
                seen_ticks.append(data["generatedAt"])
                names = [e["name"] for e in data["recentEvents"]]
                if data["events"] > before and "Live server signup" in names:
                    break
            ticks.append(seen_ticks)
        # One leader ticks for both processes: the snapshot both received is the same broadcast.
        assert ticks[0][-1] in ticks[1] or ticks[1][-1] in ticks[0]
