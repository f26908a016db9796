"""The consent ledger: append-only proof of every decision, and its effects.

Grant and withdraw are one call (`consent_update`). Each decided purpose
becomes a ConsentRecord with the proof GDPR Art. 7(1) asks for (policy
version, hash of the notice shown, source, controllers, time, truncated
network, user agent); the session's consent snapshot, which ingestion,
identity and personalization read, follows the latest decision at once.

Withdrawal takes effect in the same transaction: no analytics consent deletes
the session's event rows and its packed sequence (consent no longer covers them,
and every report leaves the session out from then on) and ingestion stores no
further rows (it reads the snapshot); no fingerprinting
consent deletes the device's fingerprints and the probabilistic links resting
on them (sessions_app.linking.identity_forget_fingerprints); no personalization
consent makes personalization serve defaults (it reads the snapshot).

`Sec-GPC: 1` is a sale/sharing opt-out (CCPA §7025) for the device and for
every profile linked to it, recorded once per subject with source `gpc`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from analytics.models import SessionSequence
from federation.models import Neuron
from personalization.services import interest_forget
from privacy.audit import audit_log
from privacy.consent import PURPOSES, consent_normalise, consent_resolve, has_consent
from privacy.models import ConsentRecord, ConsentSource
from sessions_app.enrichment import RequestMeta
from sessions_app.linking import identity_forget_fingerprints
from sessions_app.models import BehaviorEvent, BridgeStatus, GlobalUserProfile, SessionBridge, UserSession


def consent_record(
    *,
    neuron: Neuron,
    decisions: Mapping[str, bool],
    source: str,
    session: UserSession | None = None,
    profile: GlobalUserProfile | None = None,
    request_meta: RequestMeta | None = None,
    policy_version: str = "",
    text_hash: str = "",
    recorded_by: str = "",
    controllers: Iterable[Neuron] | None = None,
    now: datetime | None = None,
) -> list[ConsentRecord]:
    """Append one ledger row per decided purpose. Never updates a row."""
    if source not in ConsentSource.values:
        raise ValueError(f"unknown consent source {source!r}")
    clean = consent_normalise(decisions)
    if not clean:
        return []
    now = now or timezone.now()
    common: dict[str, Any] = {
        "neuron": neuron,
        "session": session,
        "profile": profile if profile is not None else (session.profile if session is not None else None),
        "anonymous_id": session.anonymous_id if session is not None else "",
        "policy_version": policy_version[:64],
        "text_hash": text_hash[:64],
        "source": source,
        "recorded_at": now,
        "ip_truncated": request_meta.ip_truncated if request_meta else "",
        "user_agent": (request_meta.user_agent if request_meta else "")[:512],
        "recorded_by": recorded_by[:200],
    }
    relying = list(controllers) if controllers is not None else [neuron]
    if connection.vendor == "postgresql":
        return _consent_insert_one_statement(clean=clean, common=common, relying=relying)
    records = ConsentRecord.objects.bulk_create(
        [ConsentRecord(purpose=purpose, granted=granted, **common) for purpose, granted in clean.items()]
    )
    if records and not records[0].pk:  # backends that do not return ids from bulk inserts
        records = list(ConsentRecord.objects.filter(public_id__in=[r.public_id for r in records]))
    through = ConsentRecord.controllers.through
    through.objects.bulk_create(
        [through(consentrecord_id=r.pk, neuron_id=n.pk) for r in records for n in relying], ignore_conflicts=True
    )
    return records


_THROUGH = ConsentRecord.controllers.through._meta.db_table
# PostgreSQL: the ledger rows and their controllers in one statement (a data-modifying CTE)
# instead of two bulk_create round trips; session creation writes the ledger on every call.
_LEDGER_SQL = (
    f"WITH r AS (INSERT INTO {ConsentRecord._meta.db_table} (public_id, neuron_id, session_id, profile_id, "
    "anonymous_id, purpose, granted, policy_version, text_hash, source, recorded_at, ip_truncated, user_agent, "
    "recorded_by) SELECT u.public_id, %s, %s, %s, %s, u.purpose, u.granted, %s, %s, %s, %s, %s, %s, %s "
    "FROM unnest(%s::uuid[], %s::text[], %s::boolean[]) AS u(public_id, purpose, granted) RETURNING id, public_id), "
    f"c AS (INSERT INTO {_THROUGH} (consentrecord_id, neuron_id) SELECT r.id, n.id FROM r "
    "CROSS JOIN unnest(%s::bigint[]) AS n(id) ON CONFLICT DO NOTHING) "
    "SELECT id, public_id FROM r"
)


def _consent_insert_one_statement(
    *, clean: Mapping[str, bool], common: dict[str, Any], relying: list[Neuron]
) -> list[ConsentRecord]:
    records = [ConsentRecord(purpose=purpose, granted=granted, **common) for purpose, granted in clean.items()]
    session, profile = common["session"], common["profile"]
    params = [
        common["neuron"].pk,
        session.pk if session is not None else None,
        profile.pk if profile is not None else None,
        common["anonymous_id"],
        common["policy_version"],
        common["text_hash"],
        common["source"],
        common["recorded_at"],
        common["ip_truncated"],
        common["user_agent"],
        common["recorded_by"],
        [r.public_id for r in records],
        [r.purpose for r in records],
        [r.granted for r in records],
        [n.pk for n in relying],
    ]
    with connection.cursor() as cursor:
        cursor.execute(_LEDGER_SQL, params)
        ids = {public_id: pk for pk, public_id in cursor.fetchall()}
    for record in records:
        record.pk = ids[record.public_id]
        record._state.adding = False
        record._state.db = connection.alias
    return records


def _forget_events(session: UserSession) -> None:
    """Analytics withdrawn: the session's events and what is copied from them (its sequence, whose
    deletion marks its day's packed sequences stale; the closed hours' rollups are recounted by
    the reconcile job) go, and its counters with them. Counts already rolled up into closed
    periods stay as anonymous aggregates."""
    BehaviorEvent.objects.filter(session=session).delete()
    SessionSequence.objects.filter(session=session).delete()
    counters = {
        "event_count": 0,
        "page_view_count": 0,
        "conversion_count": 0,
        "interaction_count": 0,
        "engagement_score": 0.0,
    }
    UserSession.objects.filter(pk=session.pk).update(**counters)
    for name, value in counters.items():
        setattr(session, name, value)


def _forget_fingerprints(session: UserSession) -> None:
    """Fingerprinting withdrawn: the identity service removes fingerprints and probabilistic links
    (undoing merges they caused, which may move this session back to its own profile)."""
    identity_forget_fingerprints(session=session)
    session.refresh_from_db(fields=["profile", "fingerprint"])


def consent_withdrawal_apply(*, session: UserSession, before: Mapping[str, bool]) -> list[str]:
    """Apply what the purposes withdrawn between `before` and the session's snapshot require, now."""
    withdrawn = [p for p in PURPOSES if has_consent(before, p) and not has_consent(session.consent, p)]
    if "analytics" in withdrawn:
        _forget_events(session)
    if not has_consent(session.consent, "fingerprinting") and ("fingerprinting" in withdrawn or session.fingerprint_id):
        _forget_fingerprints(session)
    if "personalization" in withdrawn:
        # After the snapshot is saved: the profile's vector is rebuilt from the sessions that still consent.
        interest_forget(session=session)
    return withdrawn


def linked_profiles(profile: GlobalUserProfile | None) -> set[int]:
    """The profile, everything merged with it, and every profile a non-rejected link joins to them."""
    if profile is None:
        return set()
    from privacy.subjects import _profile_closure

    profiles = _profile_closure({profile.pk})
    bridged: set[int] = set()
    for a, b in (
        SessionBridge.objects.filter(Q(from_profile_id__in=profiles) | Q(to_profile_id__in=profiles))
        .exclude(status=BridgeStatus.REJECTED)
        .values_list("from_profile_id", "to_profile_id")
    ):
        bridged |= {a, b}
    bridged.discard(None)
    session_bridged = SessionBridge.objects.filter(
        Q(from_session__profile_id__in=profiles) | Q(to_session__profile_id__in=profiles)
    ).exclude(status=BridgeStatus.REJECTED)
    for a, b in session_bridged.values_list("from_session__profile_id", "to_session__profile_id"):
        bridged |= {a, b}
    bridged.discard(None)
    if bridged - profiles:
        profiles |= _profile_closure(bridged - profiles)
    return profiles


def consent_gpc_apply(*, session: UserSession, request_meta: RequestMeta | None, now: datetime | None = None) -> int:
    """Record the GPC sale/sharing opt-out for the device and every linked profile (once each).

    Returns the number of ledger rows written. Live sessions of the linked
    profiles get the opt-out in their snapshot too, so it holds on every device.
    """
    now = now or timezone.now()
    written = 0
    gpc_records = ConsentRecord.objects.filter(purpose="saleSharing", source=ConsentSource.GPC, granted=False)
    if not gpc_records.filter(session=session).exists():
        written += len(
            consent_record(
                neuron=session.neuron,
                session=session,
                decisions={"saleSharing": False},
                source=ConsentSource.GPC,
                request_meta=request_meta,
                now=now,
            )
        )
    profiles = linked_profiles(session.profile)
    if not profiles:
        return written
    already = set(
        gpc_records.filter(profile_id__in=profiles, session__isnull=True).values_list("profile_id", flat=True)
    )
    for profile in GlobalUserProfile.objects.filter(pk__in=profiles - already).select_related("neuron"):
        written += len(
            consent_record(
                neuron=profile.neuron,
                profile=profile,
                decisions={"saleSharing": False},
                source=ConsentSource.GPC,
                request_meta=request_meta,
                now=now,
            )
        )
    others = (
        UserSession.objects.select_for_update()
        .filter(profile_id__in=profiles, ended_at__isnull=True, consent__saleSharing=True)
        .exclude(pk=session.pk)
    )
    changed = []
    for other in others:
        other.consent = {**other.consent, "saleSharing": False}
        changed.append(other)
    UserSession.objects.bulk_update(changed, ["consent"])
    return written


# The session's columns come from the CTE `s` that inserts it; the ledger rows of a new
# session are recorded at its start, through the API, with no notice hash or operator.
_SESSION_LEDGER_CTES = (
    f"r AS (INSERT INTO {ConsentRecord._meta.db_table} (public_id, neuron_id, session_id, profile_id, "
    "anonymous_id, purpose, granted, policy_version, text_hash, source, recorded_at, ip_truncated, user_agent, "
    "recorded_by) SELECT u.public_id, s.neuron_id, s.id, s.profile_id, s.anonymous_id, u.purpose, u.granted, "
    "'', '', %s, s.started_at, s.ip_truncated, %s, '' FROM s CROSS JOIN "
    "unnest(%s::uuid[], %s::text[], %s::boolean[]) AS u(public_id, purpose, granted) RETURNING id), "
    f"c AS (INSERT INTO {_THROUGH} (consentrecord_id, neuron_id) SELECT r.id, s.neuron_id FROM r CROSS JOIN s)"
)


def consent_session_opened_cte(
    *, given: Mapping[str, bool] | None, request_meta: RequestMeta
) -> tuple[str, list[Any]] | None:
    """PostgreSQL: the ledger rows for the decisions a new session carried, as CTEs (with their
    parameters) for the statement that inserts the session as CTE `s` (returning all its
    columns); None without decisions.

    Session creation then writes the session and its consent proof in one statement, atomic
    without a transaction block; consent_session_opened does the same for any database.
    """
    clean = consent_normalise(given)
    if not clean:
        return None
    params = [
        ConsentSource.API.value,
        request_meta.user_agent[:512],
        [uuid.uuid4() for _ in clean],
        list(clean),
        list(clean.values()),
    ]
    return _SESSION_LEDGER_CTES, params


def consent_session_opened(
    *,
    session: UserSession,
    given: Mapping[str, bool] | None,
    request_meta: RequestMeta,
    now: datetime | None = None,
) -> None:
    """A session was created or restored: record the decisions it carried, and GPC."""
    decisions = consent_normalise(given)
    if decisions:
        consent_record(
            neuron=session.neuron,
            session=session,
            decisions=decisions,
            source=ConsentSource.API,
            request_meta=request_meta,
            now=now,
        )
    if request_meta.gpc:
        consent_gpc_apply(session=session, request_meta=request_meta)


@transaction.atomic
def consent_update(
    *,
    session: UserSession,
    given: Mapping[str, bool] | None,
    source: str = ConsentSource.API,
    request_meta: RequestMeta | None = None,
    policy_version: str = "",
    text_hash: str = "",
    actor: Any = None,
) -> UserSession:
    """Grant or withdraw consent (the same call): ledger rows, the new snapshot, the effects, at once.

    `actor` is the staff user when an operator changes a visitor's consent; that
    change is recorded with source `admin` and audited.
    """
    locked = UserSession.objects.select_for_update(of=("self",)).select_related("neuron", "profile").get(pk=session.pk)
    gpc = bool(request_meta and request_meta.gpc)
    decisions = consent_normalise(given)
    before = dict(locked.consent or {})
    locked.consent = consent_resolve(given=decisions, previous=before, gpc=gpc)
    locked.gpc = locked.gpc or gpc
    locked.save(update_fields=["consent", "gpc"])
    from privacy.audit import actor_label

    staff = actor is not None
    consent_record(
        neuron=locked.neuron,
        session=locked,
        decisions=decisions,
        source=ConsentSource.ADMIN if staff else source,
        request_meta=request_meta,
        policy_version=policy_version,
        text_hash=text_hash,
        recorded_by=actor_label(actor) if staff else "",
    )
    if gpc:
        consent_gpc_apply(session=locked, request_meta=request_meta)
    withdrawn = consent_withdrawal_apply(session=locked, before=before)
    if staff:
        audit_log(
            actor=actor,
            action="consent.change",
            subject=f"session:{locked.public_id}",
            details={"decisions": decisions, "withdrawn": withdrawn},
        )
    return locked


def consent_current(*, session: UserSession) -> dict[str, dict[str, Any]]:
    """The latest ledger decision per purpose for this session (and its profile's GPC opt-out)."""
    rows = (
        ConsentRecord.objects.filter(Q(session=session) | Q(profile_id=session.profile_id, session__isnull=True))
        .order_by("purpose", "-recorded_at", "-pk")
        .values("purpose", "granted", "source", "recorded_at", "policy_version")
        if session.profile_id
        else ConsentRecord.objects.filter(session=session)
        .order_by("purpose", "-recorded_at", "-pk")
        .values("purpose", "granted", "source", "recorded_at", "policy_version")
    )
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        latest.setdefault(row["purpose"], row)
    return latest
