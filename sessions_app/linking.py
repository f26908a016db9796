"""Probabilistic cross-device links: candidates, the score, and the job that applies it.

The score of a link between two profiles combines independent signals with a
noisy-OR; each signal has a weight w (how much it alone is worth) and decays
with the gap Δt between the two sides' activity, with half-life h:

    confidence = 1 − Π_signals (1 − w · 2^(−Δt / h))

Signals (both sides must have fingerprinting consent for any of them):

- fingerprint — a session of each profile carries the same fingerprint hash.
      A "place" is a quiet network (at most IDENTITY_PLACE_MAX_DEVICES anonymous
      ids within IDENTITY_PLACE_WINDOW: a home, not an office or a mobile
      carrier's shared addresses); profiles carrying the hash that were seen on
      a common place are at one place. w = IDENTITY_FINGERPRINT_WEIGHT when the
      two profiles are at one place (one device through several anonymous ids),
      else IDENTITY_FINGERPRINT_WEIGHT / L, where L ≥ 1 is the number of places
      the hash was seen at (a popular configuration on several devices). If
      the hash is carried by profiles of two different user ids it is a shared
      (family) device: w ≤ IDENTITY_SHARED_DEVICE_CAP, below the merge
      threshold. h = IDENTITY_FINGERPRINT_HALF_LIFE.
- network — same truncated network (/24 or /48), browser family, OS family
      and device type, active within IDENTITY_NETWORK_WINDOW of each other.
      w = IDENTITY_NETWORK_WEIGHT / (m − 1), m = distinct profiles on that
      network key inside the window (an office is many people); above
      IDENTITY_NETWORK_MAX_PROFILES the signal is ignored. h = IDENTITY_NETWORK_HALF_LIFE.

Shared devices (identity.device_is_shared: a type households pass around,
IDENTITY_SHARED_DEVICE_TYPES, or an anonymous id two user ids signed in on):
a session there may be anyone in the household, so it is linked on its own
(not its anonymous id), every signal it takes part in is capped at
IDENTITY_SHARED_DEVICE_CAP (a suggestion, never a merge), and two sessions of
shared devices are not linked to each other at all.

Δt is the gap between the two sessions' activity intervals (0 when they
overlap); the closest pair of sessions decides. At or above
IDENTITY_MERGE_THRESHOLD the profiles merge (recorded, undoable); from
IDENTITY_SUGGEST_THRESHOLD up the link is `suggested` for an operator; below
that nothing is stored. Two profiles with different user ids are never linked.

Deterministic links (same user id, alias) do not pass through here: they score
1.0 and merge in sessions_app.identity.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import OperationalError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from config.api.errors import Conflict
from sessions_app import identity
from sessions_app.models import (
    BridgeMethod,
    BridgeStatus,
    DeviceFingerprint,
    GlobalUserProfile,
    ProfileMerge,
    SessionBridge,
    UserSession,
)

logger = logging.getLogger(__name__)

DEADLOCK_DETECTED = "40P01"  # PostgreSQL SQLSTATE
PROBABILISTIC_METHODS = (BridgeMethod.FINGERPRINT, BridgeMethod.NETWORK)
FORMULA = "1 - prod(1 - w * 2^(-gap/halfLife))"

# ("p", surviving profile pk), ("a", anonymous id without a profile), or ("s", session pk) for a
# session without a profile on a shared device (there the anonymous id is not one visitor).
ProfileKey = tuple[str, Any]


@dataclass(frozen=True)
class Candidate:
    """What linking needs to know about one session."""

    session_id: int
    neuron_id: int
    public_id: str
    anonymous_id: str
    key: ProfileKey
    user_hash: str | None
    fingerprint_id: int | None
    network: str
    network_key: tuple[str, str, str, str] | None
    started_at: datetime
    last_activity_at: datetime
    shared: bool = False  # a shared device's session: its signals are capped (device_is_shared)


@dataclass
class Link:
    """A scored link between two profiles, and the closest pair of sessions behind each signal."""

    neuron_id: int
    a: ProfileKey
    b: ProfileKey
    signals: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, tuple[Candidate, Candidate]] = field(default_factory=dict)

    @property
    def confidence(self) -> float:
        miss = 1.0
        for signal in self.signals.values():
            miss *= 1.0 - signal["value"]
        return round(1.0 - miss, 4)

    @property
    def method(self) -> str:
        """The strongest signal names the link."""
        return max(self.signals, key=lambda name: self.signals[name]["value"])


def _gap(a: Candidate, b: Candidate) -> timedelta:
    """Time between two sessions' activity intervals; zero when they overlap."""
    gap = max(a.started_at, b.started_at) - min(a.last_activity_at, b.last_activity_at)
    return max(gap, timedelta(0))


def _decay(gap: timedelta, half_life: timedelta) -> float:
    return math.pow(2.0, -gap.total_seconds() / half_life.total_seconds())


def _network_key(row: dict[str, Any]) -> tuple[str, str, str, str] | None:
    if not row["ip_truncated"] or not row["browser"]:
        return None
    return (row["ip_truncated"], row["browser"], row["os"], row["device_type"])


CANDIDATE_FIELDS = (
    "pk",
    "neuron_id",
    "public_id",
    "anonymous_id",
    "profile_id",
    "fingerprint_id",
    "ip_truncated",
    "browser",
    "os",
    "device_type",
    "started_at",
    "last_activity_at",
)


def _survivors(profile_ids: Iterable[int]) -> dict[int, tuple[int, str | None]]:
    """profile pk -> (surviving pk, its user id hash), following merged_into chains in a few queries."""
    result: dict[int, tuple[int, str | None]] = {}
    pending = set(profile_ids)
    parents: dict[int, int | None] = {}
    hashes: dict[int, str | None] = {}
    while pending:
        rows = GlobalUserProfile.objects.filter(pk__in=pending).values_list("pk", "merged_into_id", "user_id_hash")
        pending = set()
        for pk, parent, user_hash in rows:
            parents[pk] = parent
            hashes[pk] = user_hash
            if parent and parent not in parents:
                pending.add(parent)
    for pk in parents:
        seen = {pk}
        current = pk
        while parents.get(current) and parents[current] not in seen:
            current = parents[current]
            seen.add(current)
        result[pk] = (current, hashes.get(current))
    return result


def _shared_anonymous_ids(rows: list[dict[str, Any]], survivors: dict[int, tuple[int, str | None]]) -> set:
    """(neuron, anonymous id) on which more than one user id signed in, among `rows`."""
    users: dict[tuple[int, str], set[str]] = defaultdict(set)
    for r in rows:
        if r["profile_id"] and survivors[r["profile_id"]][1]:
            users[(r["neuron_id"], r["anonymous_id"])].add(survivors[r["profile_id"]][1])
    return {device for device, hashes in users.items() if len(hashes) > 1}


def candidates_load(queryset) -> list[Candidate]:
    """Candidates for the sessions of `queryset` that consented to fingerprinting."""
    rows = list(queryset.filter(consent__fingerprinting=True).values(*CANDIDATE_FIELDS))
    survivors = _survivors({r["profile_id"] for r in rows if r["profile_id"]})
    shared_types = set(settings.IDENTITY_SHARED_DEVICE_TYPES)
    shared_ids = _shared_anonymous_ids(rows, survivors)
    out = []
    for r in rows:
        shared = r["device_type"] in shared_types or (r["neuron_id"], r["anonymous_id"]) in shared_ids
        if r["profile_id"]:
            pk, user_hash = survivors[r["profile_id"]]
            key: ProfileKey = ("p", pk)
        elif shared:
            key, user_hash = ("s", r["pk"]), None
        else:
            key, user_hash = ("a", r["anonymous_id"]), None
        out.append(
            Candidate(
                session_id=r["pk"],
                neuron_id=r["neuron_id"],
                public_id=str(r["public_id"]),
                anonymous_id=r["anonymous_id"],
                key=key,
                user_hash=user_hash,
                fingerprint_id=r["fingerprint_id"],
                network=r["ip_truncated"],
                network_key=_network_key(r),
                started_at=r["started_at"],
                last_activity_at=r["last_activity_at"],
                shared=shared,
            )
        )
    return out


def _places(group: list[Candidate], place_networks: set[str]) -> dict[ProfileKey, object | None]:
    """Profile key -> its place (a component of profiles sharing quiet networks), None if unplaced."""
    parent: dict[object, object] = {}

    def find(item: object) -> object:
        parent.setdefault(item, item)
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    placed = set()
    for c in group:
        find(c.key)
        if c.network in place_networks:
            parent[find(c.key)] = find(("net", c.network))
            placed.add(c.key)
    return {c.key: (find(c.key) if c.key in placed else None) for c in group}


def place_networks_for(candidates: list[Candidate]) -> set[str]:
    """Networks quiet enough to say "the same place": at most IDENTITY_PLACE_MAX_DEVICES anonymous
    ids seen there within IDENTITY_PLACE_WINDOW of the newest candidate (a home, not an office
    or a mobile carrier's shared addresses)."""
    networks = {c.network for c in candidates if c.network and c.fingerprint_id}
    if not networks:
        return set()
    newest = max(c.last_activity_at for c in candidates)
    neuron_ids = {c.neuron_id for c in candidates}
    rows = (
        UserSession.objects.filter(
            neuron_id__in=neuron_ids,
            ip_truncated__in=networks,
            last_activity_at__gte=newest - settings.IDENTITY_PLACE_WINDOW,
        )
        .values("ip_truncated")
        .annotate(devices=Count("anonymous_id", distinct=True))
    )
    return {r["ip_truncated"] for r in rows if r["devices"] <= settings.IDENTITY_PLACE_MAX_DEVICES}


Offer = Callable[[str, Candidate, Candidate, float, timedelta, dict], None]


def links_score(
    candidates: list[Candidate], *, focus: set[ProfileKey] | None = None, place_networks: set[str] | None = None
) -> list[Link]:
    """Score every pair of profiles the candidates connect (only pairs touching `focus`, if given)."""
    if place_networks is None:
        place_networks = place_networks_for(candidates)
    links: dict[tuple[ProfileKey, ProfileKey], Link] = {}

    def offer(name: str, x: Candidate, y: Candidate, weight: float, half_life: timedelta, extra: dict) -> None:
        if x.key == y.key or (x.user_hash and y.user_hash and x.user_hash != y.user_hash):
            return
        if focus is not None and x.key not in focus and y.key not in focus:
            return
        if x.shared and y.shared:
            return  # two sessions of shared devices: nothing says who held either
        if x.shared or y.shared:
            # A shared device's session may be anyone in the household: suggest, never merge.
            weight = min(weight, settings.IDENTITY_SHARED_DEVICE_CAP)
            extra = {**extra, "sharedDevice": True}
        gap = _gap(x, y)
        value = weight * _decay(gap, half_life)
        a, b = sorted((x.key, y.key), key=repr)
        link = links.setdefault((a, b), Link(neuron_id=x.neuron_id, a=a, b=b))
        if name not in link.signals or value > link.signals[name]["value"]:
            link.signals[name] = {
                "weight": round(weight, 4),
                "gapHours": round(gap.total_seconds() / 3600, 2),
                "halfLifeHours": round(half_life.total_seconds() / 3600, 2),
                "value": round(value, 4),
                **extra,
            }
            link.sessions[name] = (x, y)

    fingerprint_signals(candidates, place_networks=place_networks, offer=offer)
    network_signals(candidates, offer=offer)
    return [link for link in links.values() if link.confidence >= settings.IDENTITY_SUGGEST_THRESHOLD]


def fingerprint_signals(candidates: list[Candidate], *, place_networks: set[str], offer: Offer) -> None:
    """Offer the fingerprint signal for every pair of profiles carrying the same hash."""
    by_fingerprint: dict[int, list[Candidate]] = defaultdict(list)
    for c in candidates:
        if c.fingerprint_id:
            by_fingerprint[c.fingerprint_id].append(c)
    for fingerprint_id, group in by_fingerprint.items():
        keys = {c.key for c in group}
        if len(keys) < 2:
            continue
        # Places: profiles carrying the hash joined when seen on a common quiet network. One
        # place is one device through any number of anonymous ids; several places mean a
        # popular configuration on different devices.
        place_of = _places(group, place_networks)
        places = len(set(place_of.values()) - {None})
        users = {c.user_hash for c in group if c.user_hash}
        best: dict[tuple[ProfileKey, ProfileKey], tuple[Candidate, Candidate]] = {}
        for i, x in enumerate(group):
            for y in group[i + 1 :]:
                if x.key == y.key:
                    continue
                pair = tuple(sorted((x.key, y.key), key=repr))
                if pair not in best or _gap(x, y) < _gap(*best[pair]):
                    best[pair] = (x, y)
        for x, y in best.values():
            together = place_of[x.key] is not None and place_of[x.key] == place_of[y.key]
            weight = settings.IDENTITY_FINGERPRINT_WEIGHT / (1 if together else max(1, places))
            if len(users) >= 2:
                weight = min(weight, settings.IDENTITY_SHARED_DEVICE_CAP)
            extra = {
                "fingerprintId": fingerprint_id,
                "sharedBy": len(keys),
                "places": places,
                "samePlace": together,
                "sharedByUsers": len(users),
            }
            offer(BridgeMethod.FINGERPRINT, x, y, weight, settings.IDENTITY_FINGERPRINT_HALF_LIFE, extra)


def network_signals(candidates: list[Candidate], *, offer: Offer) -> None:
    """Offer the network signal for profiles on one network key within the window of each other."""
    window = settings.IDENTITY_NETWORK_WINDOW
    by_network: dict[tuple[str, str, str, str], list[Candidate]] = defaultdict(list)
    for c in candidates:
        if c.network_key:
            by_network[c.network_key].append(c)
    for group in by_network.values():
        if len({c.key for c in group}) < 2:
            continue
        group.sort(key=lambda c: c.started_at)
        starts = [c.started_at for c in group]
        # A session lasts at most SESSION_ABSOLUTE_LIFETIME, so anything within the window of x
        # started in this range: bisect instead of comparing every pair (a carrier's shared
        # network is thousands of sessions).
        reach = window + settings.SESSION_ABSOLUTE_LIFETIME
        for i, x in enumerate(group):
            lo = bisect_left(starts, x.started_at - reach)
            hi = bisect_right(starts, x.last_activity_at + window)
            # Profiles seen on this network key within the window around x: an office is many people.
            near = [(j, group[j]) for j in range(lo, hi) if j != i and _gap(x, group[j]) <= window]
            keys = {y.key for _, y in near} | {x.key}
            if len(keys) < 2 or len(keys) > settings.IDENTITY_NETWORK_MAX_PROFILES:
                continue
            weight = settings.IDENTITY_NETWORK_WEIGHT / (len(keys) - 1)
            for j, y in near:
                if j > i:
                    offer(
                        BridgeMethod.NETWORK,
                        x,
                        y,
                        weight,
                        settings.IDENTITY_NETWORK_HALF_LIFE,
                        {"profilesOnNetwork": len(keys)},
                    )


# --- applying links ------------------------------------------------------------------------------


def _materialize(key: ProfileKey, *, neuron_id: int, now: datetime) -> GlobalUserProfile:
    """The profile behind a key; an anonymous id without one gets a fresh anonymous profile."""
    if key[0] == "p":
        return GlobalUserProfile.objects.get(pk=key[1])
    if key[0] == "s":
        # One session of a shared device: a profile of its own, the device's other sessions stay apart.
        session = UserSession.objects.select_for_update(of=("self",)).get(pk=key[1])
        if session.profile_id is not None:
            return identity.profile_resolve(GlobalUserProfile.objects.get(pk=session.profile_id))
        profile = GlobalUserProfile.objects.create(neuron_id=neuron_id, first_seen_at=now, last_seen_at=now)
        UserSession.objects.filter(pk=session.pk).update(profile=profile)
        return profile
    # Lock the device's sessions: two runs materializing the same anonymous id create one profile.
    device = list(
        UserSession.objects.select_for_update(of=("self",))
        .filter(neuron_id=neuron_id, anonymous_id=key[1])
        .order_by("pk")
        .values_list("pk", "profile_id")
    )
    owned = next((profile_id for _, profile_id in device if profile_id), None)
    if owned is not None:
        return identity.profile_resolve(GlobalUserProfile.objects.get(pk=owned))
    profile = GlobalUserProfile.objects.create(neuron_id=neuron_id, first_seen_at=now, last_seen_at=now)
    UserSession.objects.filter(neuron_id=neuron_id, anonymous_id=key[1], profile__isnull=True).update(profile=profile)
    return profile


def _bridge_between(a: GlobalUserProfile, b: GlobalUserProfile) -> SessionBridge | None:
    return (
        SessionBridge.objects.filter(
            Q(from_profile=a, to_profile=b) | Q(from_profile=b, to_profile=a),
            method__in=PROBABILISTIC_METHODS,
        )
        .order_by("-pk")
        .first()
    )


class Outcome:
    MERGED = "merged"
    SUGGESTED = "suggested"
    UNCHANGED = "unchanged"  # already one profile, vetoed, or decided by an operator


@transaction.atomic
def link_apply(*, link: Link, now: datetime | None = None) -> str:
    """Record a scored link: merge at or above the threshold, else suggest. Idempotent.

    Locks both profiles first, so two runs scoring the same pair at once apply it once.
    A pair an operator rejected (or split) stays rejected. Returns an Outcome.
    """
    now = now or timezone.now()
    neuron_id = link.neuron_id
    first = _materialize(link.a, neuron_id=neuron_id, now=now)
    second = _materialize(link.b, neuron_id=neuron_id, now=now)
    try:
        x, y = identity.profiles_lock_resolved(first, second)
    except Conflict:
        return Outcome.UNCHANGED
    if x.pk == y.pk or not identity.profiles_may_merge(x, y):
        return Outcome.UNCHANGED
    existing = _bridge_between(x, y)
    if existing is not None and existing.status in (BridgeStatus.REJECTED, BridgeStatus.MERGED):
        return Outcome.UNCHANGED
    if existing is not None and existing.confidence == link.confidence:
        return Outcome.UNCHANGED  # the same evidence scored again

    # An identified profile survives; between two anonymous ones, the older.
    x_is_source = (
        y.is_identified if x.is_identified != y.is_identified else (x.first_seen_at, x.pk) > (y.first_seen_at, y.pk)
    )
    source, target = (x, y) if x_is_source else (y, x)
    session_a, session_b = link.sessions[link.method]
    if session_a.key != link.a:
        session_a, session_b = session_b, session_a
    from_session, to_session = (session_a, session_b) if x_is_source else (session_b, session_a)
    evidence = {
        "signals": link.signals,
        "formula": FORMULA,
        "threshold": settings.IDENTITY_MERGE_THRESHOLD,
        "scoredAt": now.isoformat(),
        "sessions": [from_session.public_id, to_session.public_id],
    }
    bridge = existing or SessionBridge(neuron_id=neuron_id)
    bridge.method = link.method
    bridge.confidence = link.confidence
    bridge.evidence = evidence
    bridge.from_session_id = from_session.session_id
    bridge.to_session_id = to_session.session_id
    bridge.from_anonymous_id = from_session.anonymous_id
    bridge.to_anonymous_id = to_session.anonymous_id
    if link.confidence >= settings.IDENTITY_MERGE_THRESHOLD:
        identity.profile_merge(
            source=source,
            target=target,
            method=link.method,
            confidence=link.confidence,
            evidence=evidence,
            bridge=bridge,
            now=now,
        )
        return Outcome.MERGED
    bridge.from_profile = source
    bridge.to_profile = target
    bridge.status = BridgeStatus.SUGGESTED
    bridge.save()
    return Outcome.SUGGESTED


@dataclass(frozen=True)
class LinkRun:
    scored: int
    merged: int
    suggested: int


def _decided(links: list[Link]) -> dict[tuple[int, int], tuple[str, float]]:
    """Existing probabilistic bridges between the links' profiles, in one query: a re-run skips
    what nothing changed (link_apply re-checks under locks, this only saves the round trips)."""
    pks = {key[1] for link in links for key in (link.a, link.b) if key[0] == "p"}
    if not pks:
        return {}
    rows = SessionBridge.objects.filter(
        method__in=PROBABILISTIC_METHODS, from_profile_id__in=pks, to_profile_id__in=pks
    ).values_list("from_profile_id", "to_profile_id", "status", "confidence")
    return {tuple(sorted((a, b))): (status, confidence) for a, b, status, confidence in rows}


def _apply_all(links: list[Link], *, now: datetime) -> LinkRun:
    merged = suggested = 0
    decided = _decided(links)
    # Strongest evidence first: a merge can make a weaker link of the same pair moot.
    for link in sorted(links, key=lambda item: -item.confidence):
        if link.a[0] == "p" and link.b[0] == "p":
            known = decided.get(tuple(sorted((link.a[1], link.b[1]))))
            if known and (known[0] != BridgeStatus.SUGGESTED or known[1] == link.confidence):
                continue
        try:
            outcome = link_apply(link=link, now=now)
        except OperationalError as exc:
            # Another run holds the same rows in the opposite order; the database picked us to
            # give way. The link is re-scored on the next run, nothing was half-applied.
            if getattr(exc.__cause__, "sqlstate", None) != DEADLOCK_DETECTED:
                raise
            logger.info("identity link deferred after a deadlock")
            continue
        merged += outcome == Outcome.MERGED
        suggested += outcome == Outcome.SUGGESTED
    return LinkRun(scored=len(links), merged=merged, suggested=suggested)


def identity_link_session(*, session_id: int, now: datetime | None = None) -> LinkRun:
    """Score and apply the links of one session (the task enqueued when a session or fingerprint is stored)."""
    now = now or timezone.now()
    session = UserSession.objects.filter(pk=session_id, consent__fingerprinting=True).first()
    if session is None:
        return LinkRun(0, 0, 0)
    window = settings.IDENTITY_NETWORK_WINDOW
    related = Q(pk=session.pk)
    if session.fingerprint_id:
        related |= Q(fingerprint_id=session.fingerprint_id)
    if session.ip_truncated and session.browser:
        related |= Q(
            ip_truncated=session.ip_truncated,
            browser=session.browser,
            os=session.os,
            device_type=session.device_type,
            last_activity_at__gte=session.started_at - window,
            started_at__lte=session.last_activity_at + window,
        )
    candidates = candidates_load(UserSession.objects.filter(related, neuron_id=session.neuron_id))
    own = next(c for c in candidates if c.session_id == session.pk)
    links = links_score(candidates, focus={own.key})
    return _apply_all(links, now=now)


def identity_link_sweep(*, since: datetime | None = None, neuron_id: int | None = None) -> LinkRun:
    """Score every session active since `since` (all, if None) against what it connects to.

    Idempotent and safe to run twice at once: each link is applied under row
    locks on its two profiles and re-checked there.
    """
    now = timezone.now()
    recent = UserSession.objects.all()
    if neuron_id is not None:
        recent = recent.filter(neuron_id=neuron_id)
    if since is not None:
        recent = recent.filter(last_activity_at__gte=since)
    recent_candidates = candidates_load(recent)
    if not recent_candidates:
        return LinkRun(0, 0, 0)
    if since is None:
        candidates = recent_candidates
    else:
        # Older sessions sharing a fingerprint or a network with recent ones are part of the picture.
        fingerprints = {c.fingerprint_id for c in recent_candidates if c.fingerprint_id}
        networks = {c.network_key[0] for c in recent_candidates if c.network_key}
        older = UserSession.objects.filter(Q(fingerprint_id__in=fingerprints) | Q(ip_truncated__in=networks))
        if neuron_id is not None:
            older = older.filter(neuron_id=neuron_id)
        candidates = candidates_load(older.filter(last_activity_at__gte=since - settings.IDENTITY_NETWORK_WINDOW))
        seen = {c.session_id for c in candidates}
        candidates += [c for c in recent_candidates if c.session_id not in seen]
        if fingerprints:
            extra = candidates_load(UserSession.objects.filter(fingerprint_id__in=fingerprints))
            seen = {c.session_id for c in candidates}
            candidates += [c for c in extra if c.session_id not in seen]
    total = LinkRun(0, 0, 0)
    ids = [c.session_id for c in candidates]
    # A merge changes the picture (fewer profiles carry a hash, places join up): re-score
    # until nothing more merges, so that a second run right after finds nothing to do.
    for _ in range(settings.IDENTITY_LINK_MAX_PASSES):
        by_neuron: dict[int, list[Candidate]] = defaultdict(list)
        for c in candidates:
            by_neuron[c.neuron_id].append(c)
        links = [link for group in by_neuron.values() for link in links_score(group)]
        run = _apply_all(links, now=now)
        total = LinkRun(total.scored + run.scored, total.merged + run.merged, total.suggested + run.suggested)
        if not run.merged:
            break
        # Chunked: SQLite caps the number of bound parameters in one statement.
        candidates = [
            c
            for i in range(0, len(ids), 5000)
            for c in candidates_load(UserSession.objects.filter(pk__in=ids[i : i + 5000]))
        ]
    return total


def identity_link_enqueue(*, session: UserSession) -> None:
    """Score the session's links after the transaction commits (never inside it: the worker
    must see the rows). A broker outage only delays linking: the periodic sweep catches up."""
    from sessions_app.tasks import link_session

    session_id = session.pk
    transaction.on_commit(lambda: link_session.delay(session_id), robust=True)


# --- consent withdrawal --------------------------------------------------------------------------


@transaction.atomic
def identity_forget_fingerprints(*, session: UserSession, actor: str = "consent withdrawal") -> int:
    """Fingerprinting consent withdrawn: forget the device's fingerprints and every probabilistic
    link that rests on them. Merges made by such links are undone; deterministic links stay.

    The device is the session's anonymous id. Returns the number of links removed.
    """
    device = UserSession.objects.filter(neuron_id=session.neuron_id, anonymous_id=session.anonymous_id)
    device_ids = list(device.values_list("pk", flat=True))
    fingerprint_ids = set(device.exclude(fingerprint__isnull=True).values_list("fingerprint_id", flat=True))
    bridges = list(
        SessionBridge.objects.filter(method__in=PROBABILISTIC_METHODS).filter(
            Q(from_session_id__in=device_ids) | Q(to_session_id__in=device_ids)
        )
    )
    if fingerprint_ids:
        seen = {b.pk for b in bridges}
        bridges += [
            b
            for b in SessionBridge.objects.filter(
                neuron_id=session.neuron_id,
                evidence__signals__fingerprint__fingerprintId__in=sorted(fingerprint_ids),
            )
            if b.pk not in seen
        ]
    merges = ProfileMerge.objects.filter(bridge__in=bridges, undone_at__isnull=True).order_by("-merged_at", "-pk")
    for merge in merges:
        identity.profile_merge_undo(merge=merge, actor=actor)
    SessionBridge.objects.filter(pk__in=[b.pk for b in bridges]).delete()

    device.exclude(fingerprint__isnull=True).update(fingerprint=None)
    # Another device with the same hash (a common configuration) keeps its own row.
    DeviceFingerprint.objects.filter(pk__in=fingerprint_ids).exclude(sessions__isnull=False).delete()
    for other in device.filter(consent__fingerprinting=True).exclude(pk=session.pk):
        other.consent = {**other.consent, "fingerprinting": False}
        other.save(update_fields=["consent"])
    return len(bridges)
