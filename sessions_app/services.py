"""Writes for sessions: the only place their business rules change data."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from config.api.errors import Unauthorized, ValidationFailed
from federation.models import Neuron
from privacy.consent import consent_resolve, has_consent
from privacy.services import (
    consent_gpc_apply,
    consent_session_opened,
    consent_session_opened_cte,
    consent_update,
    identifier_is_erased,
)
from sessions_app.enrichment import RequestMeta
from sessions_app.identity import device_is_shared, profile_identify
from sessions_app.linking import identity_link_enqueue
from sessions_app.models import DeviceFingerprint, EndReason, GlobalUserProfile, SessionChannel, UserSession
from sessions_app.selectors import session_get_by_token

UTM_KEYS = ("source", "medium", "campaign", "term", "content")


def token_generate() -> str:
    # 256 bits from the OS CSPRNG; only its SHA-256 is stored.
    return secrets.token_urlsafe(32)


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def session_expiry(*, started_at: datetime, last_activity_at: datetime) -> datetime:
    return min(
        last_activity_at + settings.SESSION_IDLE_TIMEOUT,
        started_at + settings.SESSION_ABSOLUTE_LIFETIME,
    )


def session_is_alive(session: UserSession, *, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return session.ended_at is None and now < session.expires_at


@dataclass(frozen=True)
class SessionResult:
    session: UserSession
    token: str | None  # the raw token, when one was issued or confirmed in this call
    restored: bool = False


def _fingerprint_store(
    *, neuron: Neuron, fingerprint: dict[str, Any] | None, consent: dict[str, bool], now: datetime
) -> DeviceFingerprint | None:
    """Store a fingerprint only with fingerprinting consent; otherwise drop it unseen."""
    if not fingerprint or not has_consent(consent, "fingerprinting"):
        return None
    fp_hash = fingerprint["hash"]
    components = fingerprint.get("components") or {}
    for _ in range(2):  # a concurrent insert of the same hash wins once; then we update it
        existing = DeviceFingerprint.objects.filter(neuron=neuron, fingerprint_hash=fp_hash).first()
        if existing:
            DeviceFingerprint.objects.filter(pk=existing.pk).update(
                last_seen_at=now, seen_count=F("seen_count") + 1, components=components
            )
            return existing
        try:
            with transaction.atomic():
                return DeviceFingerprint.objects.create(
                    neuron=neuron,
                    fingerprint_hash=fp_hash,
                    components=components,
                    first_seen_at=now,
                    last_seen_at=now,
                )
        except IntegrityError:
            continue
    return None


def _new_session(
    *,
    neuron: Neuron,
    anonymous_id: str,
    consent: dict[str, bool],
    given: dict[str, bool] | None,
    request_meta: RequestMeta,
    referrer: str,
    landing_page: str,
    utm: dict[str, str],
    fingerprint: DeviceFingerprint | None,
    profile: GlobalUserProfile | None,
    now: datetime,
    channel: str,
) -> tuple[UserSession, str]:
    """Insert a session with the consent ledger rows of the decisions it carried (`given`)."""
    token = token_generate()
    device = request_meta.device
    session = UserSession(
        neuron=neuron,
        token_hash=token_hash(token),
        token_rotated_at=now,
        anonymous_id=anonymous_id,
        profile=profile,
        fingerprint=fingerprint,
        device_type=device.device_type,
        browser=device.browser,
        browser_version=device.browser_version,
        os=device.os,
        os_version=device.os_version,
        country=request_meta.country,
        ip_truncated=request_meta.ip_truncated,
        gpc=request_meta.gpc,
        referrer=referrer[:2048],
        landing_page=landing_page[:2048],
        **{f"utm_{key}": (utm.get(key) or "")[:200] for key in UTM_KEYS},
        started_at=now,
        last_activity_at=now,
        expires_at=session_expiry(started_at=now, last_activity_at=now),
        consent=consent,
        channel=channel,
    )
    _session_insert(session, given=given, request_meta=request_meta)
    return session, token


_SESSION_FIELDS = [f for f in UserSession._meta.concrete_fields if not f.primary_key]
_SESSION_INSERT = "INSERT INTO {} ({}) VALUES ({}) RETURNING *".format(
    UserSession._meta.db_table,
    ", ".join(f'"{f.column}"' for f in _SESSION_FIELDS),
    ", ".join(["%s"] * len(_SESSION_FIELDS)),
)


def _session_insert(session: UserSession, *, given: dict[str, bool] | None, request_meta: RequestMeta) -> None:
    """The session row and its consent proof, atomically.

    On PostgreSQL one statement does both (the session INSERT as a CTE the ledger rows read
    from): atomic on its own, so creation needs no transaction block and costs one round trip
    instead of four (BEGIN, two INSERTs, COMMIT). The statement text is built once and stays
    under psycopg's 50-parameter limit for caching its parsed form. Elsewhere, two writes in
    a transaction.
    """
    if connection.vendor != "postgresql":
        with transaction.atomic(savepoint=False):
            session.save(force_insert=True)
            # GPC is applied by the caller, after the insert.
            consent_session_opened(
                session=session, given=given, request_meta=replace(request_meta, gpc=False), now=session.started_at
            )
        return
    params = [f.get_db_prep_save(f.pre_save(session, True), connection) for f in _SESSION_FIELDS]
    sql = f"WITH s AS ({_SESSION_INSERT})"
    ledger = consent_session_opened_cte(given=given, request_meta=request_meta)
    if ledger is not None:
        sql, params = f"{sql}, {ledger[0]}", params + ledger[1]
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} SELECT id FROM s", params)
        session.pk = cursor.fetchone()[0]
    session._state.adding = False
    session._state.db = connection.alias


def session_create(
    *,
    neuron: Neuron,
    request_meta: RequestMeta,
    anonymous_id: str | None = None,
    consent: dict[str, bool] | None = None,
    referrer: str = "",
    landing_page: str = "",
    utm: dict[str, str] | None = None,
    fingerprint: dict[str, Any] | None = None,
    restore: dict[str, Any] | None = None,
    channel: str = SessionChannel.API,
) -> SessionResult:
    """Open a session, or restore the one the client holds while it is alive.

    Restore needs the session's own token. A live session comes back as it is
    (restored=True). A dead one is replaced by a new session that keeps its
    anonymous id and consent, so the visitor stays one visitor.

    A plain new session is one INSERT statement (with its consent proof; _session_insert),
    so only restores, fingerprints and GPC opt-outs, which write more, open a transaction.
    """
    writes_more = bool(restore or fingerprint or request_meta.gpc)
    with transaction.atomic() if writes_more else contextlib.nullcontext():
        return _session_open(
            neuron=neuron,
            request_meta=request_meta,
            anonymous_id=anonymous_id,
            consent=consent,
            referrer=referrer,
            landing_page=landing_page,
            utm=utm,
            fingerprint=fingerprint,
            restore=restore,
            channel=channel,
        )


def _session_open(
    *,
    neuron: Neuron,
    request_meta: RequestMeta,
    anonymous_id: str | None,
    consent: dict[str, bool] | None,
    referrer: str,
    landing_page: str,
    utm: dict[str, str] | None,
    fingerprint: dict[str, Any] | None,
    restore: dict[str, Any] | None,
    channel: str,
) -> SessionResult:
    now = timezone.now()
    found = None
    if restore:
        candidate = session_get_by_token(token=restore["token"], now=now)
        # Another site's session, or a token for a different session, is treated as unknown.
        if (
            candidate is not None
            and candidate.session.public_id == restore["sessionId"]
            and candidate.session.neuron_id == neuron.pk
        ):
            found = candidate
    previous = found.session if found else None
    if found is not None and previous is not None and session_is_alive(previous, now=now):
        if consent is not None or request_meta.gpc:
            previous = consent_update(session=previous, given=consent, request_meta=request_meta)
        if found.via_previous:
            # The client restored with a token in its grace period: give it the current one.
            return SessionResult(previous, _rotate_token(session=previous, now=now), restored=True)
        return SessionResult(previous, restore["token"], restored=True)

    if previous is not None:
        anonymous_id = previous.anonymous_id
        effective = consent_resolve(given=consent, previous=previous.consent, gpc=request_meta.gpc)
        # On a shared device (a family tablet, or one that more than one user signed in on)
        # whoever comes back starts anonymous instead of inheriting the last user's profile.
        shared = previous.profile_id is not None and device_is_shared(
            neuron_id=neuron.pk, anonymous_id=anonymous_id, device_type=request_meta.device.device_type
        )
        profile = None if shared else previous.profile
    else:
        # An erased visitor's identifier is never reattached to new data (privacy tombstones).
        if anonymous_id and identifier_is_erased(subject_type="anonymousId", value=anonymous_id, neuron_id=neuron.pk):
            anonymous_id = None
        anonymous_id = anonymous_id or str(uuid.uuid4())
        effective = consent_resolve(given=consent, gpc=request_meta.gpc)
        profile = None
    fp = _fingerprint_store(neuron=neuron, fingerprint=fingerprint, consent=effective, now=now)
    session, token = _new_session(
        neuron=neuron,
        anonymous_id=anonymous_id,
        consent=effective,
        given=consent,
        request_meta=request_meta,
        referrer=referrer,
        landing_page=landing_page,
        utm=utm or {},
        fingerprint=fp,
        profile=profile,
        now=now,
        channel=channel,
    )
    if request_meta.gpc:
        consent_gpc_apply(session=session, request_meta=request_meta)
    if fp is not None:
        identity_link_enqueue(session=session)
    return SessionResult(session, token, restored=False)


def _rotate_token(*, session: UserSession, now: datetime) -> str:
    """Issue a new token; the old one keeps working for the grace period, then never again."""
    token = token_generate()
    session.previous_token_hash = session.token_hash
    session.previous_token_valid_until = now + settings.SESSION_TOKEN_GRACE_PERIOD
    session.token_hash = token_hash(token)
    session.token_rotated_at = now
    session.save(update_fields=["previous_token_hash", "previous_token_valid_until", "token_hash", "token_rotated_at"])
    return token


@transaction.atomic
def session_heartbeat(*, session: UserSession, via_previous_token: bool = False) -> SessionResult:
    """Record activity, extend the idle expiry, rotate the token when it is due."""
    now = timezone.now()
    session.last_activity_at = now
    session.expires_at = session_expiry(started_at=session.started_at, last_activity_at=now)
    session.save(update_fields=["last_activity_at", "expires_at"])
    token = None
    # A client still on its grace-period token already has a newer one in flight.
    if not via_previous_token and now - session.token_rotated_at >= settings.SESSION_TOKEN_ROTATION_INTERVAL:
        token = _rotate_token(session=session, now=now)
    return SessionResult(session, token)


@transaction.atomic
def session_update(
    *,
    session: UserSession,
    request_meta: RequestMeta | None = None,
    user_id: str | None = None,
    traits: dict[str, Any] | None = None,
    preferences: dict[str, Any] | None = None,
    consent: dict[str, bool] | None = None,
    metadata: dict[str, Any] | None = None,
    fingerprint: dict[str, Any] | None = None,
    via_previous_token: bool | None = None,
) -> SessionResult:
    """Apply allowlisted changes. A new userId attaches the session to that user's profile
    (sessions_app.identity) and rotates the token.

    Updates of one session run one after another on its row lock. `via_previous_token` (a
    request's bearer token: how it matched `session` when authentication read it; None for
    callers without a token) is checked again once the lock is held, since a concurrent
    update may have rotated the token meanwhile: a token that is no longer the current one
    nor the previous one inside its grace period is a 401, as it would be for a later
    request; one that is the previous one is applied but rotates nothing (as a heartbeat):
    the client already has the newer token in flight, and a rotated-out token must never
    mint a new one that outlives its grace period."""
    now = timezone.now()
    presented = None
    if via_previous_token is not None:
        presented = session.previous_token_hash if via_previous_token else session.token_hash
    # Lock the row alone and read the profile after: a request that waited for the lock reads
    # the row as the update before it left it, but a joined profile as of its own snapshot
    # (PostgreSQL's READ COMMITTED re-check), so a profile created meanwhile would read as None.
    session = UserSession.objects.select_for_update(of=("self",)).select_related("neuron").get(pk=session.pk)
    if presented is not None:
        challenge = {"WWW-Authenticate": 'Bearer realm="session"'}
        if not session_is_alive(session, now=now):
            raise Unauthorized("This session has ended or expired; create or restore a session.", headers=challenge)
        if session.token_hash != presented:
            valid_until = session.previous_token_valid_until
            if session.previous_token_hash != presented or valid_until is None or valid_until <= now:
                raise Unauthorized("Invalid or expired session token.", headers=challenge)
            via_previous_token = True
    fields: set[str] = set()
    token: str | None = None

    if consent is not None or (request_meta and request_meta.gpc):
        # The ledger records each decision and applies a withdrawal at once (privacy.ledger).
        session = consent_update(session=session, given=consent, request_meta=request_meta)

    if fingerprint is not None:
        fp = _fingerprint_store(neuron=session.neuron, fingerprint=fingerprint, consent=session.consent, now=now)
        if fp is not None:
            session.fingerprint = fp
            fields.add("fingerprint")
            identity_link_enqueue(session=session)

    if user_id is not None and not identifier_is_erased(
        subject_type="userId", value=user_id, neuron_id=session.neuron_id
    ):
        if profile_identify(session=session, user_id=user_id, now=now) and not via_previous_token:
            # A privilege change must not keep the old credential.
            token = _rotate_token(session=session, now=now)

    if traits or preferences:
        profile = session.profile
        if profile is None:
            profile = GlobalUserProfile.objects.create(neuron=session.neuron, first_seen_at=now, last_seen_at=now)
            session.profile = profile
            fields.add("profile")
        if traits:
            profile.traits = {**profile.traits, **traits}
        if preferences:
            profile.preferences = {**profile.preferences, **preferences}
        profile.last_seen_at = now
        profile.save(update_fields=["traits", "preferences", "last_seen_at", "updated_at"])

    if metadata is not None:
        merged = {**session.metadata, **metadata}
        if len(str(merged)) > 16 * 1024:
            raise ValidationFailed(errors={"metadata": ["Session metadata may not exceed 16 KB."]})
        session.metadata = merged
        fields.add("metadata")

    if fields:
        session.save(update_fields=sorted(fields))
    return SessionResult(session, token)


@transaction.atomic
def session_end(*, session: UserSession, reason: str = EndReason.CLIENT) -> UserSession:
    now = timezone.now()
    updated = UserSession.objects.filter(pk=session.pk, ended_at__isnull=True).update(
        ended_at=now, end_reason=reason, expires_at=now
    )
    if updated:
        session.refresh_from_db()
    return session


def session_expire_idle(*, now: datetime | None = None, batch_size: int | None = None) -> int:
    """End every session whose idle timeout or absolute lifetime has passed.

    Works in bounded batches so one sweep never holds a long lock. A session ends
    at its last activity (that is when the visitor left), not at sweep time.
    Safe to run twice at once: each UPDATE re-checks `ended_at IS NULL`.
    """
    now = now or timezone.now()
    batch_size = batch_size or settings.SESSION_EXPIRY_SWEEP_BATCH
    total = 0
    while True:
        ids = list(
            UserSession.objects.filter(ended_at__isnull=True, expires_at__lte=now)
            .order_by("expires_at")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return total
        with transaction.atomic():
            lifetime_cut = now - settings.SESSION_ABSOLUTE_LIFETIME
            total += UserSession.objects.filter(pk__in=ids, ended_at__isnull=True, started_at__lte=lifetime_cut).update(
                ended_at=F("expires_at"), end_reason=EndReason.LIFETIME
            )
            total += UserSession.objects.filter(pk__in=ids, ended_at__isnull=True).update(
                ended_at=F("last_activity_at"), end_reason=EndReason.TIMEOUT
            )
        if len(ids) < batch_size:
            return total
