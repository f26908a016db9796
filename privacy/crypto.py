"""Identifiers at rest: a keyed hash for lookups and MultiFernet for the value.

The hash (HMAC-SHA256 under IDENTIFIER_HASH_KEY) lets us find a user id without
storing it; the encrypted copy lets us export it to its owner. MultiFernet
encrypts with the first key of FIELD_ENCRYPTION_KEYS and decrypts with any,
so `rotate_encryption_keys` can re-encrypt under a new key without downtime.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode() if isinstance(key, str) else key) for key in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def identifier_hash(value: str, *, namespace: str = "user") -> str:
    key = settings.IDENTIFIER_HASH_KEY.encode()
    return hmac.new(key, f"{namespace}:{value}".encode(), hashlib.sha256).hexdigest()


def encrypt(value: str) -> str:
    return fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str | None:
    if not token:
        return None
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        return None


def rotate(token: str) -> str:
    """Re-encrypt under the newest key (MultiFernet.rotate)."""
    return fernet().rotate(token.encode()).decode()
