"""Who a data subject is: from one identifier to every identifier held on that person.

A data-subject request names one identifier (a user id, a profile's public id,
a session id or an anonymous id). `subject_scope` widens it to the person:
the profiles merged into one another, the sessions of those profiles, the
anonymous ids of those sessions, the fingerprints recorded for them, and the
user-id hashes. Registry links (privacy.registry) match rows against these sets.

It never widens into someone else: an anonymous id that another identified
person's sessions also carry (a shared device) is left out, and so is a
fingerprint that other people's sessions use.

A scope confined to one site (`neuron_id`) finds and matches only that site's
rows: the same anonymous id or user id on another site is another subject there
(privacy.dsar.entry_q applies it).

A visitor asking with a session token has proven only that they hold that
session: the anonymous id, user id or profile it carries were chosen by the
browser (anyone can claim them). Their request's scope is `session_scope`: the
one session, on its site, and what is keyed to it (its events, consent records,
interests; its fingerprint when no other session uses it); never its profile,
its anonymous id's other sessions, nor rows matched by anonymous id or user-id
hash. Requests for the whole person are made by staff, who verify identity.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q

from privacy.crypto import identifier_hash
from privacy.models import SubjectType
from sessions_app.models import DeviceFingerprint, GlobalUserProfile, UserSession

# The namespace sessions_app.identity hashes aliased identifiers under.
ALIAS_NAMESPACE = "alias"


@dataclass
class SubjectScope:
    profiles: set[int] = field(default_factory=set)
    sessions: set[int] = field(default_factory=set)
    anonymous_ids: set[str] = field(default_factory=set)
    fingerprints: set[int] = field(default_factory=set)
    user_id_hashes: set[str] = field(default_factory=set)
    # The only site whose rows are the subject's; None: every site (staff requests).
    neuron_id: int | None = None
    # One session only (a session token's request, `session_scope`): no person behind it.
    session_only: bool = False

    def is_empty(self) -> bool:
        return not (self.profiles or self.sessions or self.anonymous_ids or self.fingerprints or self.user_id_hashes)

    def values(self, key: str) -> set[Any]:
        return getattr(self, key)

    def as_counts(self) -> dict[str, int]:
        return {key: len(self.values(key)) for key in SCOPE_KEYS}


SCOPE_KEYS = ("profiles", "sessions", "anonymous_ids", "fingerprints", "user_id_hashes")


def subject_hash(*, subject_type: str, value: str) -> str:
    """The keyed hash a request and a tombstone keep instead of the identifier."""
    return identifier_hash(value, namespace=f"subject:{subject_type}")


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (ValueError, AttributeError, TypeError):
        return None


def _alias_profiles(value: str, site: Q) -> set[int]:
    from sessions_app.models import ProfileAlias

    digest = identifier_hash(value, namespace=ALIAS_NAMESPACE)
    return set(ProfileAlias.objects.filter(site, identifier_hash=digest).values_list("profile_id", flat=True))


def _profile_closure(seeds: set[int], site: Q | None = None) -> set[int]:
    """Every profile merged into the seeds' surviving profiles, and those survivors (on `site` only)."""
    site = site if site is not None else Q()
    profiles = set(seeds)
    frontier = set(seeds)
    # Up: the survivors the seeds were merged into.
    while frontier:
        up = set(
            GlobalUserProfile.objects.filter(
                site, pk__in=GlobalUserProfile.objects.filter(pk__in=frontier).values("merged_into_id")
            ).values_list("pk", flat=True)
        )
        frontier = up - profiles
        profiles |= up
    frontier = set(profiles)
    # Down: everything merged into any of them.
    while frontier:
        down = set(GlobalUserProfile.objects.filter(site, merged_into_id__in=frontier).values_list("pk", flat=True))
        frontier = down - profiles
        profiles |= down
    return profiles


def subject_scope(*, subject_type: str, value: str, neuron_id: int | None = None) -> SubjectScope:
    """Every identifier held on the person behind `value`; empty when nothing is held.

    `neuron_id`: only that site's rows (a session token's request); None: every site (staff)."""
    site = Q() if neuron_id is None else Q(neuron_id=neuron_id)
    seed_profiles: set[int] = set()
    seed_sessions: set[int] = set()
    seed_anonymous: set[str] = set()
    if subject_type == SubjectType.USER_ID:
        digest = identifier_hash(value)
        seed_profiles |= set(GlobalUserProfile.objects.filter(site, user_id_hash=digest).values_list("pk", flat=True))
        seed_profiles |= _alias_profiles(value, site)
    elif subject_type == SubjectType.PROFILE_ID:
        public_id = _as_uuid(value)
        if public_id:
            seed_profiles |= set(
                GlobalUserProfile.objects.filter(site, public_id=public_id).values_list("pk", flat=True)
            )
    elif subject_type == SubjectType.SESSION_ID:
        public_id = _as_uuid(value)
        if public_id:
            rows = UserSession.objects.filter(site, public_id=public_id).values_list("pk", "profile_id")
            for pk, profile_id in rows:
                seed_sessions.add(pk)
                if profile_id:
                    seed_profiles.add(profile_id)
    elif subject_type == SubjectType.ANONYMOUS_ID:
        rows = UserSession.objects.filter(site, anonymous_id=value).values_list("pk", "profile_id")
        for pk, profile_id in rows:
            seed_sessions.add(pk)
            if profile_id:
                seed_profiles.add(profile_id)
        seed_profiles |= _alias_profiles(value, site)
        if rows or seed_profiles:
            seed_anonymous.add(value)
    else:
        raise ValueError(f"unknown subject type {subject_type!r}")

    scope = SubjectScope(neuron_id=neuron_id)
    scope.profiles = _profile_closure(seed_profiles, site) if seed_profiles else set()
    session_rows = UserSession.objects.filter(
        site & (Q(pk__in=seed_sessions) | Q(profile_id__in=scope.profiles) | Q(anonymous_id__in=seed_anonymous))
    ).values_list("pk", "anonymous_id", "profile_id", "fingerprint_id")
    candidates_anonymous = set(seed_anonymous)
    fingerprint_candidates: set[int] = set()
    for pk, anonymous_id, profile_id, fingerprint_id in session_rows:
        # A session of this anonymous id that belongs to another identified person is theirs.
        if profile_id and profile_id not in scope.profiles and pk not in seed_sessions:
            continue
        scope.sessions.add(pk)
        if anonymous_id:
            candidates_anonymous.add(anonymous_id)
        if fingerprint_id:
            fingerprint_candidates.add(fingerprint_id)
    # The device's other anonymous sessions (before any login) are the subject's too.
    more = UserSession.objects.filter(site, anonymous_id__in=candidates_anonymous, profile__isnull=True).exclude(
        pk__in=scope.sessions
    )
    for pk, fingerprint_id in more.values_list("pk", "fingerprint_id"):
        scope.sessions.add(pk)
        if fingerprint_id:
            fingerprint_candidates.add(fingerprint_id)
    shared_anonymous = set(
        UserSession.objects.filter(site, anonymous_id__in=candidates_anonymous, profile__isnull=False)
        .exclude(profile_id__in=scope.profiles)
        .exclude(pk__in=scope.sessions)
        .values_list("anonymous_id", flat=True)
    )
    scope.anonymous_ids = candidates_anonymous - shared_anonymous
    shared_fingerprints = set(
        UserSession.objects.filter(fingerprint_id__in=fingerprint_candidates)
        .exclude(pk__in=scope.sessions)
        .values_list("fingerprint_id", flat=True)
    )
    scope.fingerprints = (fingerprint_candidates - shared_fingerprints) | set(
        DeviceFingerprint.objects.filter(site, profile_id__in=scope.profiles).values_list("pk", flat=True)
    )
    scope.user_id_hashes = set(
        GlobalUserProfile.objects.filter(pk__in=scope.profiles, user_id_hash__isnull=False).values_list(
            "user_id_hash", flat=True
        )
    )
    return scope


def session_scope(session_pk: int | None, neuron_id: int) -> SubjectScope:
    """The scope a session token proves: that one session on its site, and its fingerprint when no
    other session uses it. No profile, anonymous id or user-id hash: those the browser chose, and
    rows matched by them (or tied to the profile the session joined) may be someone else's.
    Empty when the session is not held (on that site)."""
    scope = SubjectScope(neuron_id=neuron_id, session_only=True)
    if session_pk is None:
        return scope
    row = UserSession.objects.filter(pk=session_pk, neuron_id=neuron_id).values_list("pk", "fingerprint_id").first()
    if row is None:
        return scope
    pk, fingerprint_id = row
    scope.sessions = {pk}
    if fingerprint_id and not UserSession.objects.filter(fingerprint_id=fingerprint_id).exclude(pk=pk).exists():
        scope.fingerprints = {fingerprint_id}
    return scope


def session_scope_by_public_id(value: str, neuron_id: int) -> SubjectScope:
    """`session_scope` of the session whose public id is `value` on the site (empty when none is)."""
    public_id = _as_uuid(value)
    pk = (
        UserSession.objects.filter(neuron_id=neuron_id, public_id=public_id).values_list("pk", flat=True).first()
        if public_id
        else None
    )
    return session_scope(pk, neuron_id)


def request_scope(*, subject_type: str, value: str, neuron_id: int | None) -> SubjectScope:
    """The scope of a data-subject request when it runs.

    A staff request (`neuron_id` None) reaches the person on every site (`subject_scope`). A request
    made with a session token (`neuron_id` set) reaches that session only (`session_scope`); it can
    only name its own session, so any other subject type is refused (ValueError)."""
    if neuron_id is None:
        return subject_scope(subject_type=subject_type, value=value)
    if subject_type != SubjectType.SESSION_ID:
        raise ValueError("a session token's request names its own session only")
    return session_scope_by_public_id(value, neuron_id)


def subject_identifiers(scope: SubjectScope) -> dict[str, list[str]]:
    """The public identifiers in a scope (for the export document and tombstones)."""
    return {
        "profileIds": sorted(
            str(u) for u in GlobalUserProfile.objects.filter(pk__in=scope.profiles).values_list("public_id", flat=True)
        ),
        "sessionIds": sorted(
            str(u) for u in UserSession.objects.filter(pk__in=scope.sessions).values_list("public_id", flat=True)
        ),
        "anonymousIds": sorted(scope.anonymous_ids),
    }
