from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils.text import slugify

from config.api.errors import Conflict, ValidationFailed
from federation.models import Neuron
from privacy.services import audit_log

PUBLISHABLE_PREFIX = "pk_"
SECRET_PREFIX = "sk_"


def hash_key(raw: str) -> str:
    # Keys carry 192 bits of randomness, so a fast hash is enough (no brute force).
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class NeuronCredentials:
    neuron: Neuron
    secret_key: str  # shown once, never stored


@transaction.atomic
def neuron_create(*, slug: str, name: str) -> NeuronCredentials:
    clean = slugify(slug)
    if not clean or clean != slug:
        raise ValidationFailed(
            "The neuron id must be a slug.",
            errors={"slug": ["Use lowercase letters, digits and hyphens."]},
        )
    if not name.strip():
        raise ValidationFailed("A name is required.", errors={"name": ["This field may not be blank."]})
    secret_key = SECRET_PREFIX + secrets.token_urlsafe(24)
    try:
        with transaction.atomic():
            neuron = Neuron.objects.create(
                slug=slug,
                name=name.strip(),
                publishable_key=PUBLISHABLE_PREFIX + secrets.token_urlsafe(24),
                secret_key_hash=hash_key(secret_key),
                secret_key_prefix=secret_key[:10],
            )
    except IntegrityError as exc:
        raise Conflict(f"A neuron with id {slug!r} already exists.") from exc
    return NeuronCredentials(neuron=neuron, secret_key=secret_key)


@transaction.atomic
def neuron_rotate_secret(*, neuron: Neuron, actor: Any = None) -> NeuronCredentials:
    """A new server key; the old one stops working at once. Audited (a key is a privilege)."""
    secret_key = SECRET_PREFIX + secrets.token_urlsafe(24)
    old_prefix = neuron.secret_key_prefix
    neuron.secret_key_hash = hash_key(secret_key)
    neuron.secret_key_prefix = secret_key[:10]
    neuron.save(update_fields=["secret_key_hash", "secret_key_prefix", "updated_at"])
    audit_log(
        actor=actor,
        action="neuron.secret.rotate",
        subject=f"neuron:{neuron.slug}",
        details={"previousPrefix": old_prefix, "prefix": neuron.secret_key_prefix},
    )
    return NeuronCredentials(neuron=neuron, secret_key=secret_key)
