"""The live dashboard websocket: staff only, snapshots every tick through one group broadcast."""

from __future__ import annotations

import asyncio
import os

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.test import Client

from analytics import ticker as ticker_module
from analytics.consumers import CLOSE_FORBIDDEN
from config.asgi import application
from sessions_app.live import live_record_events
from tests.helpers import grant_all
from tests.sessions_app.factories import BehaviorEventFactory, UserSessionFactory

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/ws/dashboard/"


@pytest.fixture(autouse=True)
def _fast_ticks(settings):
    settings.DASHBOARD_TICK_SECONDS = 0.1
    ticker_module.ticker.last_event_id = None


@pytest.fixture(autouse=True)
def _own_channel_layer():
    """Each test runs on an event loop of its own: it gets a channel layer of its own too. A Redis
    layer left by an earlier test can hold a receive lock of that test's closed loop (a consumer
    cancelled mid-receive), and the next receive on it fails ("bound to a different event loop")."""
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def cookie_for(user) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    session_id = client.cookies["sessionid"].value
    return [(b"cookie", f"sessionid={session_id}".encode()), (b"origin", b"http://testserver")]


def communicator(headers: list[tuple[bytes, bytes]] | None = None) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, URL, headers=headers or [(b"origin", b"http://testserver")])


# Generous deadlines: they bound waits that succeed within a tick or two, but a loaded 2-core CI
# machine (PostgreSQL, Redis and the test sharing it) has missed a 3 s one.
async def next_snapshot(comm: WebsocketCommunicator, timeout: float = 5.0) -> dict:
    message = await comm.receive_json_from(timeout=timeout)
    assert message["type"] == "snapshot", message
    return message["data"]


async def snapshot_where(comm: WebsocketCommunicator, predicate, timeout: float = 10.0) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        data = await next_snapshot(comm, timeout=max(0.05, deadline - loop.time()))
        if predicate(data):
            return data


@pytest.fixture
def operator(django_user_model):
    return grant_all(
        django_user_model.objects.create_user("operator", "op@example.com", "pw-operator-1", is_staff=True)
    )


def test_anonymous_connection_is_refused():
    """Without a logged-in session the handshake is refused with 4403."""

    async def scenario():
        comm = communicator()
        connected, code = await comm.connect()
        assert connected is False and code == CLOSE_FORBIDDEN

    async_to_sync(scenario)()


def test_non_staff_user_is_refused(django_user_model):
    """A logged-in user who is not staff is refused too."""
    visitor = django_user_model.objects.create_user("visitor", "v@example.com", "pw-visitor-1")
    headers = cookie_for(visitor)

    async def scenario():
        connected, code = await communicator(headers).connect()
        assert connected is False and code == CLOSE_FORBIDDEN

    async_to_sync(scenario)()


def test_cross_site_origin_is_refused(operator):
    """A page on another origin cannot open the socket with the operator's cookie."""
    headers = [h for h in cookie_for(operator) if h[0] != b"origin"] + [(b"origin", b"https://evil.example")]

    async def scenario():
        connected, _ = await communicator(headers).connect()
        assert connected is False

    async_to_sync(scenario)()


def test_staff_gets_a_snapshot_at_once_and_then_every_tick(operator):
    """An operator receives a snapshot on connect and a fresh one each tick."""

    headers = cookie_for(operator)

    async def scenario():
        comm = communicator(headers)
        connected, _ = await comm.connect()
        assert connected
        first = await next_snapshot(comm, timeout=1)
        assert {"events", "activeSessions", "perMinute", "recentEvents", "generatedAt"} <= set(first)
        second = await next_snapshot(comm)
        third = await next_snapshot(comm)
        assert first["generatedAt"] < second["generatedAt"] < third["generatedAt"]
        await comm.disconnect()

    async_to_sync(scenario)()


@pytest.mark.parametrize("revoke", ["staff", "permission", "account", "logout"])
def test_an_operator_who_loses_access_is_disconnected_at_the_next_tick(operator, revoke):
    """Staff status or the dashboard's permission removed, account deactivated or logged out:
    the socket closes with 4403."""
    from django.contrib.sessions.models import Session

    headers = cookie_for(operator)

    def take_access_away() -> None:
        if revoke == "logout":
            Session.objects.all().delete()
            return
        if revoke == "permission":
            operator.user_permissions.clear()
            return
        setattr(operator, "is_staff" if revoke == "staff" else "is_active", False)
        operator.save()

    async def scenario():
        comm = communicator(headers)
        connected, _ = await comm.connect()
        assert connected
        await next_snapshot(comm, timeout=1)
        await database_sync_to_async(take_access_away)()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:  # a snapshot already on its way may still arrive; then the close
            message = await comm.receive_output(timeout=max(0.05, deadline - loop.time()))
            if message["type"] == "websocket.close":
                assert message["code"] == CLOSE_FORBIDDEN
                break
        await comm.disconnect()

    async_to_sync(scenario)()


def test_recorded_events_appear_in_the_next_snapshots(operator):
    """Counters and the recent-events feed show an event stored after the operator connected."""
    session = UserSessionFactory()

    headers = cookie_for(operator)

    async def scenario():
        comm = communicator(headers)
        await comm.connect()
        before = await next_snapshot(comm, timeout=1)
        await next_snapshot(comm)  # the ticker has started and noted the newest event id

        event = await asyncio.to_thread(
            lambda: BehaviorEventFactory(session=session, event_type="track", event_name="Signup")
        )
        live_record_events(neuron_id=session.neuron_id, event_types={"track": 1}, session_key=str(session.public_id))

        after = await snapshot_where(comm, lambda d: d["events"] > before["events"])
        assert after["activeSessions"] >= 1
        with_feed = after if after["recentEvents"] else await snapshot_where(comm, lambda d: d["recentEvents"])
        assert with_feed["recentEvents"][0]["id"] == event.id
        assert with_feed["recentEvents"][0]["name"] == "Signup"
        await comm.disconnect()

    async_to_sync(scenario)()


def test_one_tick_is_broadcast_to_every_connected_dashboard(operator, monkeypatch):
    """Two dashboards get the same snapshots, computed once per tick rather than once per client."""
    computed: list[str] = []
    original = ticker_module.dashboard_snapshot

    def counting(**kwargs):
        snapshot, last = original(**kwargs)
        computed.append(snapshot["generatedAt"])
        return snapshot, last

    monkeypatch.setattr(ticker_module, "dashboard_snapshot", counting)

    headers = cookie_for(operator)

    async def scenario():
        first, second = communicator(headers), communicator(headers)
        await first.connect()
        await second.connect()
        await next_snapshot(first, timeout=1)  # the greeting each gets on connect
        await next_snapshot(second, timeout=1)
        b = [(await next_snapshot(second))["generatedAt"] for _ in range(3)]
        # first also holds the ticks from before second joined; it must hold every one second got.
        a: list[str] = []
        while not set(b) <= set(a):
            a.append((await next_snapshot(first, timeout=3))["generatedAt"])
        assert set(a) <= set(computed)
        assert len(computed) == len(set(computed))
        assert ticker_module.ticker.connections == 2
        await first.disconnect()
        await second.disconnect()

    async_to_sync(scenario)()


def test_ticker_stops_and_releases_its_lease_when_the_last_dashboard_leaves(operator):
    """No dashboard connected, no ticking: the task ends and the lease is free for another process."""

    headers = cookie_for(operator)

    async def scenario():
        comm = communicator(headers)
        await comm.connect()
        await next_snapshot(comm, timeout=1)
        await next_snapshot(comm)
        assert cache.get(ticker_module.LEASE_KEY) == ticker_module.ticker.token
        await comm.disconnect()
        await asyncio.wait_for(ticker_module.ticker.task, timeout=2)
        assert ticker_module.ticker.connections == 0

    async_to_sync(scenario)()
    assert cache.get(ticker_module.LEASE_KEY) is None


def test_a_second_process_does_not_broadcast_while_the_lease_is_held(operator):
    """Only the lease holder computes snapshots; the other ticker waits its turn."""
    leader, follower = ticker_module.Ticker(), ticker_module.Ticker()
    assert leader._compute() is not None
    assert follower._compute() is None
    leader._release()
    assert follower._compute() is not None


def test_ping_is_answered_and_unknown_messages_get_an_error(operator):
    """The socket answers pings and explains that it only sends snapshots."""

    headers = cookie_for(operator)

    async def scenario():
        comm = communicator(headers)
        await comm.connect()
        await next_snapshot(comm, timeout=1)
        await comm.send_json_to({"type": "ping"})
        while (reply := await comm.receive_json_from(timeout=2))["type"] == "snapshot":
            pass
        assert reply == {"type": "pong"}
        await comm.send_json_to({"type": "subscribe", "neuron": "x"})
        while (reply := await comm.receive_json_from(timeout=2))["type"] == "snapshot":
            pass
        assert reply["type"] == "error"
        await comm.disconnect()

    async_to_sync(scenario)()


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="the Redis channel layer")
def test_redis_channel_layer_survives_a_quiet_spell_longer_than_its_blocking_pop():
    """A consumer waiting more than 5 s for a message keeps waiting instead of dying on a read timeout."""
    from channels.layers import get_channel_layer

    async def scenario():
        layer = get_channel_layer()
        name = await layer.new_channel()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(name), timeout=6.5)
        await layer.send(name, {"type": "still.alive"})
        assert (await asyncio.wait_for(layer.receive(name), timeout=2))["type"] == "still.alive"

    async_to_sync(scenario)()
