"""config.redis_clients: one client per process and purpose, even when threads race for it."""

from __future__ import annotations

import threading

from config.redis_clients import redis_client, redis_client_forget


def test_racing_threads_get_one_client(settings):
    settings.REDIS_URL = "redis://127.0.0.1:6399/0"  # never connected to: clients connect lazily
    redis_client_forget("race")
    start = threading.Barrier(8)
    seen = []

    def grab():
        start.wait()
        seen.append(redis_client("race", socket_timeout=0.1))

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(client) for client in seen}) == 1
    redis_client_forget("race")


def test_purposes_and_urls_get_their_own_clients(settings):
    settings.REDIS_URL = "redis://127.0.0.1:6399/0"
    first = redis_client("a")
    assert redis_client("a") is first and redis_client("b") is not first
    settings.REDIS_URL = "redis://127.0.0.1:6399/1"
    moved = redis_client("a")
    assert moved is not first and moved.connection_pool.connection_kwargs["db"] == 1
    redis_client_forget("a")
    assert redis_client("a") is not moved
    for purpose in ("a", "b"):
        redis_client_forget(purpose)
