from __future__ import annotations

from federation.models import Neuron
from federation.services import hash_key


def neuron_get_by_publishable_key(*, key: str) -> Neuron | None:
    if not key or len(key) > 64:
        return None
    return Neuron.objects.filter(publishable_key=key, is_active=True).first()


def neuron_get_by_secret_key(*, key: str) -> Neuron | None:
    if not key or len(key) > 128:
        return None
    return Neuron.objects.filter(secret_key_hash=hash_key(key), is_active=True).first()


def neuron_get_by_slug(*, slug: str) -> Neuron | None:
    return Neuron.objects.filter(slug=slug, is_active=True).first()
