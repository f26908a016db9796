"""Reads for sessions."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import Q
from django.utils import timezone

from sessions_app.models import SessionChannel, UserSession


@dataclass(frozen=True)
class TokenMatch:
    session: UserSession
    via_previous: bool  # matched the rotated-out token inside its grace period


_TOKEN_LOCK_SQL = (
    f"SELECT * FROM {UserSession._meta.db_table} WHERE token_hash = %s "
    "OR (previous_token_hash = %s AND previous_token_valid_until > %s) LIMIT 1"
)


def session_get_by_token(*, token: str, now: datetime | None = None, lock: bool = False) -> TokenMatch | None:
    """The session a bearer token opens: its current token, or the previous one within grace.

    `lock=True` (inside a transaction) also takes the session's row lock, as ingestion
    needs: reading and locking in one query saves a round trip per batch.
    """
    if not token or len(token) > 256:
        return None
    now = now or timezone.now()
    digest = hashlib.sha256(token.encode()).hexdigest()
    if lock:
        # Raw SQL: compiling the ORM query (joins, OR, ordering) was ~40 % of ingestion's
        # CPU per single event (cProfile, bench/hotpath_cpu.py). No joins: ingestion reads
        # neither the site nor the profile object, only their ids.
        sql = _TOKEN_LOCK_SQL + (" FOR UPDATE" if connection.features.has_select_for_update else "")
        found = list(UserSession.objects.raw(sql, [digest, digest, now]))
        session = found[0] if found else None
    else:
        session = (
            UserSession.objects.select_related("neuron", "profile")
            .filter(Q(token_hash=digest) | Q(previous_token_hash=digest, previous_token_valid_until__gt=now))
            .first()
        )
    if session is None:
        return None
    return TokenMatch(session=session, via_previous=session.token_hash != digest)


_CURRENT_SQL = (
    f"SELECT * FROM {UserSession._meta.db_table} WHERE neuron_id = %s AND anonymous_id = %s "
    f"AND channel = '{SessionChannel.SEGMENT}' AND ended_at IS NULL AND expires_at > %s "
    "ORDER BY started_at DESC LIMIT 1"
)


def session_current_for_anonymous_id(*, neuron_id: int, anonymous_id: str, now: datetime) -> UserSession | None:
    """The anonymous id's live /v1 session on a site (the newest, should there be several): /v1 (a
    public write key and an anonymous id) never continues a session of the session API, which only
    its token opens (a caller knowing a visitor's anonymous id would otherwise change its consent
    and add events to it).

    Raw SQL, as the locking token read above: every /v1 call reads this, and compiling the
    ORM query (with the site and the profile joined) cost ~1 ms of CPU, several times what
    the database spends. The site and the profile load when something asks for them.
    """
    found = list(UserSession.objects.raw(_CURRENT_SQL, [neuron_id, anonymous_id, now]))
    return found[0] if found else None
