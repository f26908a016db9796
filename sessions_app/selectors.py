"""Reads for sessions."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from sessions_app.models import UserSession


@dataclass(frozen=True)
class TokenMatch:
    session: UserSession
    via_previous: bool  # matched the rotated-out token inside its grace period


def session_get_by_token(*, token: str, now: datetime | None = None, lock: bool = False) -> TokenMatch | None:
    """The session a bearer token opens: its current token, or the previous one within grace.

    `lock=True` (inside a transaction) also takes the session's row lock, as ingestion
    needs: reading and locking in one query saves a round trip per batch.
    """
    if not token or len(token) > 256:
        return None
    now = now or timezone.now()
    digest = hashlib.sha256(token.encode()).hexdigest()
    sessions = UserSession.objects.select_related("neuron", "profile").filter(
        Q(token_hash=digest) | Q(previous_token_hash=digest, previous_token_valid_until__gt=now)
    )
    if lock:
        sessions = sessions.select_for_update(of=("self",))
    session = sessions.first()
    if session is None:
        return None
    return TokenMatch(session=session, via_previous=session.token_hash != digest)


def session_current_for_anonymous_id(*, neuron_id: int, anonymous_id: str, now: datetime) -> UserSession | None:
    """The anonymous id's live session on a site (the newest, should there be several)."""
    return (
        UserSession.objects.select_related("neuron", "profile")
        .filter(neuron_id=neuron_id, anonymous_id=anonymous_id, ended_at__isnull=True, expires_at__gt=now)
        .order_by("-started_at")
        .first()
    )
