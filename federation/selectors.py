from __future__ import annotations

import threading
import time

from django.conf import settings

from federation.models import Neuron
from federation.services import hash_key

# Publishable key -> (neuron or None, monotonic time the entry expires). Every session
# creation and every /v1 call authenticates by this key; reading it from the database
# each time was one round trip and ~0.5 ms of ORM work per request (bench/hotpath_cpu.py).
# A save or delete of a Neuron clears this process's entries at once (federation.apps
# connects the signal); other processes see the change within NEURON_CACHE_SECONDS, so
# a deactivated key is refused everywhere within seconds. Unknown keys are cached too
# (briefly), so a flood of bad keys does not become a flood of queries.
_by_publishable_key: dict[str, tuple[Neuron | None, float]] = {}
_cache_lock = threading.Lock()
_CACHE_MAX_ENTRIES = 10_000
clock = time.monotonic  # tests move it forward


def neuron_cache_clear() -> None:
    with _cache_lock:
        _by_publishable_key.clear()


def neuron_get_by_publishable_key(*, key: str) -> Neuron | None:
    if not key or len(key) > 64:
        return None
    ttl = settings.NEURON_CACHE_SECONDS
    if ttl <= 0:
        return Neuron.objects.filter(publishable_key=key, is_active=True).first()
    now = clock()
    hit = _by_publishable_key.get(key)
    if hit is not None and hit[1] > now:
        return hit[0]
    neuron = Neuron.objects.filter(publishable_key=key, is_active=True).first()
    with _cache_lock:
        if len(_by_publishable_key) >= _CACHE_MAX_ENTRIES:
            _by_publishable_key.clear()
        _by_publishable_key[key] = (neuron, now + ttl)
    return neuron


def neuron_get_by_secret_key(*, key: str) -> Neuron | None:
    if not key or len(key) > 128:
        return None
    return Neuron.objects.filter(secret_key_hash=hash_key(key), is_active=True).first()


def neuron_get_by_slug(*, slug: str) -> Neuron | None:
    return Neuron.objects.filter(slug=slug, is_active=True).first()
