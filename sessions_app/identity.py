"""Identity: which person (GlobalUserProfile) a session belongs to, and reversible merges.

Rules:
- Deterministic links (the same user id, an alias) merge at once with confidence 1.0.
- Two profiles identified with different user ids are never merged, by any
  method: a shared device is two people, not one.
- Every merge writes a ProfileMerge record of what moved, so `profile_split`
  can put sessions, anonymous ids (they live on sessions), events, fingerprints
  and aliases back where they were, and restore both profiles' traits.
- Merges and splits lock the profiles involved (in primary-key order, so two
  merges never deadlock) and run in one transaction: nothing is half-merged.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from config.api.errors import Conflict, ValidationFailed
from federation.models import Neuron
from personalization.services import interest_profile_recompute
from privacy.audit import actor_label
from privacy.crypto import encrypt, identifier_hash
from privacy.services import audit_log
from sessions_app.models import (
    BehaviorEvent,
    BridgeMethod,
    BridgeStatus,
    DeviceFingerprint,
    GlobalUserProfile,
    ProfileAlias,
    ProfileMerge,
    SessionBridge,
    UserSession,
)

ALIAS_NAMESPACE = "alias"
SYSTEM_ACTOR = "system"


def profile_resolve(profile: GlobalUserProfile) -> GlobalUserProfile:
    """Follow merged_into pointers to the surviving profile."""
    seen = {profile.pk}
    while profile.merged_into_id and profile.merged_into_id not in seen:
        seen.add(profile.merged_into_id)
        profile = profile.merged_into
    return profile


def _alias_lookup(*, neuron: Neuron, identifier: str) -> GlobalUserProfile | None:
    alias = (
        ProfileAlias.objects.select_related("profile")
        .filter(neuron=neuron, identifier_hash=identifier_hash(identifier, namespace=ALIAS_NAMESPACE))
        .first()
    )
    return profile_resolve(alias.profile) if alias else None


def profile_find_for_user_id(*, neuron: Neuron, user_id: str) -> GlobalUserProfile | None:
    """The surviving profile known by this user id (its own or an aliased earlier one), if any."""
    profile = GlobalUserProfile.objects.filter(neuron=neuron, user_id_hash=identifier_hash(user_id)).first()
    if profile is not None:
        return profile_resolve(profile)
    return _alias_lookup(neuron=neuron, identifier=user_id)


def profile_find_for_anonymous_id(*, neuron: Neuron, anonymous_id: str) -> GlobalUserProfile | None:
    """The surviving profile of an anonymous id: an alias of it, else its latest session's profile."""
    profile = _alias_lookup(neuron=neuron, identifier=anonymous_id)
    if profile is not None:
        return profile
    session = (
        UserSession.objects.select_related("profile")
        .filter(neuron=neuron, anonymous_id=anonymous_id, profile__isnull=False)
        .order_by("-started_at")
        .first()
    )
    return profile_resolve(session.profile) if session else None


def profile_get_or_create_for_user_id(*, neuron: Neuron, user_id: str, now: datetime) -> GlobalUserProfile:
    """The profile of a user id, created exactly once even under concurrent identify calls.

    The unique (neuron, user_id_hash) constraint decides the race: the loser's
    INSERT fails inside a savepoint and it reads the winner's row.
    """
    digest = identifier_hash(user_id)
    for _ in range(3):
        profile = profile_find_for_user_id(neuron=neuron, user_id=user_id)
        if profile is not None:
            return profile
        try:
            with transaction.atomic():
                return GlobalUserProfile.objects.create(
                    neuron=neuron,
                    user_id_hash=digest,
                    user_id_encrypted=encrypt(user_id),
                    first_seen_at=now,
                    last_seen_at=now,
                )
        except IntegrityError:
            continue
    raise RuntimeError("could not create or find the profile for a user id")


# --- merge ---------------------------------------------------------------------------------------


def _id_ranges(ids: Iterable[int]) -> list[list[int]]:
    """[1, 2, 3, 7, 8] -> [[1, 3], [7, 8]]: event ids of one profile are mostly consecutive."""
    ranges: list[list[int]] = []
    for value in sorted(ids):
        if ranges and value == ranges[-1][1] + 1:
            ranges[-1][1] = value
        else:
            ranges.append([value, value])
    return ranges


def _ranges_q(ranges: list[list[int]]) -> Q:
    q = Q(pk__in=[])
    for first, last in ranges:
        q |= Q(pk__gte=first, pk__lte=last) if first != last else Q(pk=first)
    return q


def _state(profile: GlobalUserProfile) -> dict[str, Any]:
    return {
        "traits": profile.traits,
        "preferences": profile.preferences,
        "firstSeenAt": profile.first_seen_at.isoformat(),
        "lastSeenAt": profile.last_seen_at.isoformat(),
    }


def _lock_profiles(*pks: int) -> dict[int, GlobalUserProfile]:
    """Row locks on the profiles, always taken in primary-key order so that merges never deadlock."""
    rows = GlobalUserProfile.objects.select_for_update().filter(pk__in=sorted(set(pks))).order_by("pk")
    return {p.pk: p for p in rows}


def profiles_lock_resolved(a: GlobalUserProfile, b: GlobalUserProfile) -> tuple[GlobalUserProfile, GlobalUserProfile]:
    """Lock the survivors of a and b (in this order). A concurrent merge may move either while we
    wait: retry then. Call inside a transaction."""
    for _ in range(5):
        ra, rb = profile_resolve(_fresh(a)), profile_resolve(_fresh(b))
        locked = _lock_profiles(ra.pk, rb.pk)
        la, lb = locked.get(ra.pk), locked.get(rb.pk)
        if la is not None and lb is not None and la.merged_into_id is None and lb.merged_into_id is None:
            return la, lb
    raise Conflict("The profiles changed while merging; try again.")


def _fresh(profile: GlobalUserProfile) -> GlobalUserProfile:
    return GlobalUserProfile.objects.select_related("merged_into").get(pk=profile.pk)


def profiles_may_merge(a: GlobalUserProfile, b: GlobalUserProfile) -> bool:
    """The veto: two different user ids are never one person."""
    return not (a.user_id_hash and b.user_id_hash and a.user_id_hash != b.user_id_hash)


def _survivor_order(a: GlobalUserProfile, b: GlobalUserProfile) -> tuple[GlobalUserProfile, GlobalUserProfile]:
    """(source, target) when exactly one of the two is identified: that one survives."""
    return (b, a) if a.is_identified else (a, b)


@transaction.atomic
def profile_merge(
    *,
    source: GlobalUserProfile,
    target: GlobalUserProfile,
    method: str,
    confidence: float = 1.0,
    evidence: dict[str, Any] | None = None,
    bridge: SessionBridge | None = None,
    from_session: UserSession | None = None,
    to_session: UserSession | None = None,
    actor: str = SYSTEM_ACTOR,
    allow_identified: bool = False,
    now: datetime | None = None,
) -> ProfileMerge | None:
    """Merge `source` into `target`; when only one is identified, that one survives.

    Returns the record, or None when they already are one profile. Two profiles
    with different user ids raise Conflict, unless `allow_identified` (an alias
    that names the earlier user id explicitly, not a shared device)."""
    now = now or timezone.now()
    a, b = profiles_lock_resolved(source, target)
    if a.pk == b.pk:
        return None
    if not allow_identified and not profiles_may_merge(a, b):
        raise Conflict("Profiles identified with different user ids are never merged.")
    source, target = _survivor_order(a, b) if a.is_identified != b.is_identified else (a, b)

    session_ids = list(UserSession.objects.filter(profile=source).values_list("pk", flat=True))
    event_ids = list(BehaviorEvent.objects.filter(profile=source).values_list("pk", flat=True))
    fingerprint_ids = list(DeviceFingerprint.objects.filter(profile=source).values_list("pk", flat=True))
    alias_ids = list(ProfileAlias.objects.filter(profile=source).values_list("pk", flat=True))
    last_event = BehaviorEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    target_before = _state(target)

    UserSession.objects.filter(pk__in=session_ids).update(profile=target)
    BehaviorEvent.objects.filter(profile=source).update(profile=target)
    DeviceFingerprint.objects.filter(pk__in=fingerprint_ids).update(profile=target)
    ProfileAlias.objects.filter(pk__in=alias_ids).update(profile=target)

    # $set_once semantics for what the absorbed profile knew: the survivor's own values win.
    target.traits = {**source.traits, **target.traits}
    target.preferences = {**source.preferences, **target.preferences}
    target.first_seen_at = min(target.first_seen_at, source.first_seen_at)
    target.last_seen_at = max(target.last_seen_at, source.last_seen_at)
    target.save(update_fields=["traits", "preferences", "first_seen_at", "last_seen_at", "updated_at"])
    source.merged_into = target
    source.save(update_fields=["merged_into", "updated_at"])
    # Interest vectors follow the events: the survivor's now covers both, the source keeps none.
    interest_profile_recompute(profile=target)
    interest_profile_recompute(profile=source)

    if bridge is None:
        bridge = SessionBridge(neuron=source.neuron, method=method)
    bridge.from_profile = source
    bridge.to_profile = target
    bridge.from_session = from_session or bridge.from_session
    bridge.to_session = to_session or bridge.to_session
    if from_session is not None:
        bridge.from_anonymous_id = from_session.anonymous_id
    if to_session is not None:
        bridge.to_anonymous_id = to_session.anonymous_id
    bridge.confidence = confidence
    bridge.evidence = evidence or bridge.evidence or {}
    bridge.status = BridgeStatus.MERGED
    bridge.decided_at = now
    bridge.save()

    return ProfileMerge.objects.create(
        neuron=source.neuron,
        source=source,
        target=target,
        bridge=bridge,
        method=method,
        moved={
            "sessions": session_ids,
            "events": _id_ranges(event_ids),
            "fingerprints": fingerprint_ids,
            "aliases": alias_ids,
        },
        last_event_id=last_event,
        source_state=_state(source),
        target_before=target_before,
        target_after=_state(target),
        actor=actor,
        merged_at=now,
    )


# --- split ---------------------------------------------------------------------------------------


def _restore_map(*, before: dict[str, Any], after: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """Undo what a merge added to a dict, keeping what was written after the merge.

    A key whose value is still what the merge left is restored to its value
    before the merge (or dropped); a key changed since the merge keeps its new value.
    """
    result: dict[str, Any] = {}
    for key in set(before) | set(current):
        if key in current and (key not in after or current[key] != after[key]):
            result[key] = current[key]
        elif key in before:
            result[key] = before[key]
    return result


def _chain_from(profile_id: int) -> list[int]:
    """The profile and every profile it was merged into since: where moved rows may live now."""
    chain = [profile_id]
    current = GlobalUserProfile.objects.filter(pk=profile_id).values_list("merged_into_id", flat=True).first()
    while current and current not in chain:
        chain.append(current)
        current = GlobalUserProfile.objects.filter(pk=current).values_list("merged_into_id", flat=True).first()
    return chain


@transaction.atomic
def profile_merge_undo(*, merge: ProfileMerge, actor: str, now: datetime | None = None) -> ProfileMerge:
    """Undo one merge: its rows go back to the source profile, both profiles' traits are restored."""
    now = now or timezone.now()
    merge = ProfileMerge.objects.select_for_update().get(pk=merge.pk)
    if merge.undone_at is not None:
        raise Conflict("This merge was already undone.")
    chain = _chain_from(merge.target_id)
    locked = _lock_profiles(merge.source_id, *chain)
    source, target = locked[merge.source_id], locked[merge.target_id]
    moved = merge.moved

    sessions = moved.get("sessions", [])
    UserSession.objects.filter(pk__in=sessions, profile_id__in=chain).update(profile=source)
    BehaviorEvent.objects.filter(
        _ranges_q(moved.get("events", [])) | Q(session_id__in=sessions, pk__gt=merge.last_event_id),
        profile_id__in=chain,
    ).update(profile=source)
    DeviceFingerprint.objects.filter(pk__in=moved.get("fingerprints", []), profile_id__in=chain).update(profile=source)
    ProfileAlias.objects.filter(pk__in=moved.get("aliases", []), profile_id__in=chain).update(profile=source)

    state = merge.source_state
    source.traits = state.get("traits", {})
    source.preferences = state.get("preferences", {})
    source.first_seen_at = datetime.fromisoformat(state["firstSeenAt"])
    source.last_seen_at = datetime.fromisoformat(state["lastSeenAt"])
    source.merged_into = None
    source.save()

    before, after = merge.target_before, merge.target_after
    target.traits = _restore_map(before=before["traits"], after=after["traits"], current=target.traits)
    target.preferences = _restore_map(
        before=before["preferences"], after=after["preferences"], current=target.preferences
    )
    target.first_seen_at = datetime.fromisoformat(before["firstSeenAt"])
    if target.last_seen_at.isoformat() == after["lastSeenAt"]:
        target.last_seen_at = datetime.fromisoformat(before["lastSeenAt"])
    target.save(update_fields=["traits", "preferences", "first_seen_at", "last_seen_at", "updated_at"])
    interest_profile_recompute(profile=source)
    interest_profile_recompute(profile=target)

    if merge.bridge_id:
        # The operator said these are two people: the linker must not merge them again.
        SessionBridge.objects.filter(pk=merge.bridge_id).update(status=BridgeStatus.REJECTED, decided_at=now)
    merge.undone_at = now
    merge.undone_by = actor[:200]
    merge.save(update_fields=["undone_at", "undone_by"])
    return merge


@transaction.atomic
def profile_split(
    *, profile: GlobalUserProfile, actor: Any, merge: ProfileMerge | None = None, now: datetime | None = None
) -> list[ProfileMerge]:
    """Split a profile back into its parts: undo one of its merges, or all of them, newest first.

    An operator action: audited. Raises Conflict when the profile has no merge left to undo.
    """
    now = now or timezone.now()
    if merge is not None:
        if merge.target_id != profile.pk:
            raise ValidationFailed(errors={"mergeId": ["This merge did not merge into this profile."]})
        merges = [merge]
    else:
        merges = list(ProfileMerge.objects.filter(target=profile, undone_at__isnull=True).order_by("-merged_at", "-pk"))
    if not merges or any(m.undone_at for m in merges):
        raise Conflict("This profile has no merge to undo.")
    label = actor_label(actor)
    undone = [profile_merge_undo(merge=m, actor=label, now=now) for m in merges]
    audit_log(
        actor=actor,
        action="identity.profile.split",
        subject=f"profile:{profile.public_id}",
        details={
            "merges": [m.pk for m in undone],
            "restoredProfiles": [
                str(p)
                for p in GlobalUserProfile.objects.filter(pk__in=[m.source_id for m in undone]).values_list(
                    "public_id", flat=True
                )
            ],
        },
    )
    return undone


@transaction.atomic
def bridge_accept(*, bridge: SessionBridge, actor: Any, now: datetime | None = None) -> SessionBridge:
    """An operator confirms a suggested (or earlier rejected) link: the two profiles merge. Audited.

    Conflict when the link is already merged, its profiles are already one, or they carry
    different user ids (the veto holds for operators too).
    """
    now = now or timezone.now()
    bridge = SessionBridge.objects.select_for_update().get(pk=bridge.pk)
    if bridge.status == BridgeStatus.MERGED:
        raise Conflict("This link is already merged.")
    if bridge.from_profile_id is None or bridge.to_profile_id is None:
        raise Conflict("This link has no profiles to merge.")
    source = profile_resolve(_fresh(bridge.from_profile))
    target = profile_resolve(_fresh(bridge.to_profile))
    if source.pk == target.pk:
        raise Conflict("Both sides already belong to one profile.")
    if not profiles_may_merge(source, target):
        raise Conflict("Profiles identified with different user ids are never merged.")
    previous = bridge.status
    evidence = {**(bridge.evidence or {}), "acceptedBy": actor_label(actor), "acceptedAt": now.isoformat()}
    profile_merge(
        source=source,
        target=target,
        method=bridge.method,
        confidence=bridge.confidence,
        evidence=evidence,
        bridge=bridge,
        actor=actor_label(actor),
        now=now,
    )
    audit_log(
        actor=actor,
        action="identity.link.accept",
        subject=f"bridge:{bridge.pk}",
        details={
            "method": bridge.method,
            "confidence": bridge.confidence,
            "previousStatus": previous,
            "sourceProfile": str(source.public_id),
            "targetProfile": str(target.public_id),
        },
    )
    bridge.refresh_from_db()
    return bridge


@transaction.atomic
def bridge_reject(*, bridge: SessionBridge, actor: Any, now: datetime | None = None) -> SessionBridge:
    """An operator says a link is wrong. A merged link is undone (split); the pair is never
    re-linked automatically. Audited. Conflict when it is already rejected."""
    now = now or timezone.now()
    bridge = SessionBridge.objects.select_for_update().get(pk=bridge.pk)
    if bridge.status == BridgeStatus.REJECTED:
        raise Conflict("This link is already rejected.")
    previous = bridge.status
    undone = []
    if bridge.status == BridgeStatus.MERGED:
        for merge in ProfileMerge.objects.filter(bridge=bridge, undone_at__isnull=True).order_by("-merged_at"):
            undone.append(profile_merge_undo(merge=merge, actor=actor_label(actor), now=now).pk)
    SessionBridge.objects.filter(pk=bridge.pk).update(status=BridgeStatus.REJECTED, decided_at=now)
    audit_log(
        actor=actor,
        action="identity.link.reject",
        subject=f"bridge:{bridge.pk}",
        details={
            "method": bridge.method,
            "confidence": bridge.confidence,
            "previousStatus": previous,
            "undoneMerges": undone,
        },
    )
    bridge.refresh_from_db()
    return bridge


# --- identify and alias --------------------------------------------------------------------------


def device_is_shared(*, neuron_id: int, anonymous_id: str, device_type: str | None = None) -> bool:
    """Whether this device's sessions are attributed one by one rather than as one visitor.

    A device is shared when it is of a type households pass around
    (IDENTITY_SHARED_DEVICE_TYPES, tablets by default: a family tablet signed in by one member
    is used by the others without signing in), or when more than one user id signed in on its
    anonymous id (a shared computer). `device_type` is the session's; None looks at the
    anonymous id's sessions.
    """
    shared_types = settings.IDENTITY_SHARED_DEVICE_TYPES
    device = UserSession.objects.filter(neuron_id=neuron_id, anonymous_id=anonymous_id)
    if device_type is not None:
        if device_type in shared_types:
            return True
    elif shared_types and device.filter(device_type__in=shared_types).exists():
        return True
    signed_in = device.filter(profile__user_id_hash__isnull=False)
    return len(signed_in.values_list("profile__user_id_hash", flat=True).distinct()[:2]) > 1


def _attach_device(
    *, session: UserSession, profile: GlobalUserProfile, previous: GlobalUserProfile | None, shared: bool
) -> None:
    """The session joins `profile`, and so do its anonymous id's sessions without a profile yet,
    unless the device is shared (device_is_shared, or another user signed in on this anonymous
    id): then its other sessions may be anyone's, so only the identified session moves, with its
    anonymous events (those of `previous` when that is an anonymous profile)."""
    device = UserSession.objects.filter(neuron_id=session.neuron_id, anonymous_id=session.anonymous_id)
    others = (
        device.exclude(pk=session.pk)
        .filter(profile__user_id_hash__isnull=False)
        .exclude(profile__user_id_hash=profile.user_id_hash)
    )
    if others.exists():
        # A second user signs in here: the device was shared all along. The earlier user keeps the
        # sessions they signed in on; those that reached them only through the device (before or
        # after their sign-in) may have been anyone's, and go back to being anonymous visits.
        shared = True
        by_device = list(others.filter(identified_at__isnull=True).values_list("pk", "profile_id", "public_id"))
        if by_device:
            ids = [pk for pk, _, _ in by_device]
            earlier_ids = {p for _, p, _ in by_device}
            UserSession.objects.filter(pk__in=ids).update(profile=None)
            BehaviorEvent.objects.filter(session_id__in=ids, profile_id__in=earlier_ids).update(profile=None)
            earlier_profiles = list(GlobalUserProfile.objects.filter(pk__in=earlier_ids))
            for earlier in earlier_profiles:
                interest_profile_recompute(profile=earlier)
            # Sessions leave a user's profile without anyone asking: the operator can see why.
            audit_log(
                actor="system",
                action="identity.device.shared",
                subject=f"session:{session.public_id}",
                details={
                    "releasedSessions": sorted(str(public_id) for _, _, public_id in by_device),
                    "fromProfiles": sorted(str(p.public_id) for p in earlier_profiles),
                },
            )
    if shared:
        UserSession.objects.filter(pk=session.pk).update(profile=profile)
        anonymous = Q(profile__isnull=True)
        if previous is not None and not previous.is_identified:
            anonymous |= Q(profile=previous)
        BehaviorEvent.objects.filter(anonymous, session_id=session.pk).update(profile=profile)
        if previous is not None and not previous.is_identified:
            interest_profile_recompute(profile=previous)
    else:
        device.filter(Q(pk=session.pk) | Q(profile__isnull=True)).update(profile=profile)
        BehaviorEvent.objects.filter(
            neuron_id=session.neuron_id, anonymous_id=session.anonymous_id, profile__isnull=True
        ).update(profile=profile)
    session.profile = profile
    interest_profile_recompute(profile=profile)


@transaction.atomic
def profile_identify(*, session: UserSession, user_id: str, now: datetime | None = None) -> bool:
    """Attach the session to the profile of `user_id`. Returns True when its profile changed.

    - No profile yet: the session and its anonymous id join the user's profile.
    - An anonymous profile: it is merged into the user's profile (recorded, undoable).
    - A profile of a different user id: never merged (the veto). The session moves to the
      new user; what the previous user did stays theirs.
    - A shared device (device_is_shared: a family tablet, or another user signed in on this
      anonymous id): only this session joins the user. Segment and PostHog hand the anonymous
      id's whole history to the user; on a shared device that history is other people's too,
      so it stays anonymous (an anonymous profile that holds only this session still merges).
    """
    now = now or timezone.now()
    target = profile_get_or_create_for_user_id(neuron=session.neuron, user_id=user_id, now=now)
    current = profile_resolve(session.profile) if session.profile_id else None
    if current is not None and current.pk == target.pk:
        if session.profile_id != target.pk:
            UserSession.objects.filter(pk=session.pk).update(profile=target)
            session.profile = target
        if session.identified_at is None:
            UserSession.objects.filter(pk=session.pk).update(identified_at=now)
            session.identified_at = now
        return False
    if session.identified_at is None:
        UserSession.objects.filter(pk=session.pk).update(identified_at=now)
        session.identified_at = now
    shared = device_is_shared(
        neuron_id=session.neuron_id, anonymous_id=session.anonymous_id, device_type=session.device_type
    )
    whole_profile = (
        current is not None
        and profiles_may_merge(current, target)
        and not (shared and UserSession.objects.filter(profile=current).exclude(pk=session.pk).exists())
    )
    if not whole_profile:
        _attach_device(session=session, profile=target, previous=current, shared=shared)
    else:
        record = profile_merge(
            source=current,
            target=target,
            method=BridgeMethod.USER_ID,
            confidence=1.0,
            evidence={"signal": "identify", "sessionId": str(session.public_id), "at": now.isoformat()},
            from_session=session,
            now=now,
        )
        session.profile = record.target if record else profile_resolve(_fresh(target))
    GlobalUserProfile.objects.filter(pk=session.profile.pk).update(last_seen_at=now)
    session.profile.last_seen_at = now
    return True


@transaction.atomic
def profile_alias(
    *,
    neuron: Neuron,
    previous_id: str,
    user_id: str,
    session: UserSession | None = None,
    now: datetime | None = None,
) -> GlobalUserProfile:
    """Segment's alias: `previous_id` (an anonymous id or an earlier user id) is also `user_id`.

    The profile of `user_id` (created if needed) absorbs whatever `previous_id`
    already names: the profile of that earlier user id, or the profiles of that
    anonymous id's sessions. The previous id is remembered as an alias, so later
    identify calls or sessions under it resolve to the same person. On a shared device
    (device_is_shared) only `session` joins the user and no alias is stored. An earlier
    user id named explicitly merges even though it is identified (that is what
    alias is for); an anonymous id whose sessions belong to a different user's
    profile is a shared device: not merged (the veto), the bridge is recorded as
    rejected with that reason, and no alias is stored.
    Returns the surviving profile of `user_id`.
    """
    now = now or timezone.now()
    if not previous_id or not user_id:
        raise ValidationFailed(errors={"previousId": ["Required."]} if not previous_id else {"userId": ["Required."]})
    target = profile_get_or_create_for_user_id(neuron=neuron, user_id=user_id, now=now)
    if previous_id == user_id:
        return target

    evidence = {"signal": "alias", "at": now.isoformat()}
    earlier = profile_find_for_user_id(neuron=neuron, user_id=previous_id)
    if earlier is not None and earlier.pk != target.pk:
        # The caller named the earlier user id itself: an explicit statement, not a shared device.
        profile_merge(
            source=earlier,
            target=target,
            method=BridgeMethod.ALIAS,
            evidence={**evidence, "previous": "user id"},
            allow_identified=True,
            now=now,
        )
    if device_is_shared(neuron_id=neuron.pk, anonymous_id=previous_id):
        # A shared device's anonymous id is not one person (a deviation from Segment, which
        # would hand the whole id to the user): only the calling session joins the user, and
        # the anonymous id is not remembered as this user's alias.
        target = profile_resolve(_fresh(target))
        if session is not None and session.anonymous_id == previous_id:
            UserSession.objects.filter(pk=session.pk).update(identified_at=now)
            session.identified_at = now
            current = profile_resolve(_fresh(session.profile)) if session.profile_id else None
            if current is None or current.pk != target.pk:
                _attach_device(session=session, profile=target, previous=current, shared=True)
        return target
    anon_sessions = (
        UserSession.objects.select_related("profile")
        .filter(neuron=neuron, anonymous_id=previous_id, profile__isnull=False)
        .order_by("pk")
    )
    candidates = {p.pk: p for p in (profile_resolve(s.profile) for s in anon_sessions)}

    vetoed = False
    for candidate in candidates.values():
        current = profile_resolve(_fresh(target))
        candidate = profile_resolve(_fresh(candidate))
        if candidate.pk == current.pk:
            continue
        if not profiles_may_merge(candidate, current):
            SessionBridge.objects.create(
                neuron=neuron,
                from_profile=candidate,
                to_profile=current,
                method=BridgeMethod.ALIAS,
                confidence=0.0,
                evidence={**evidence, "veto": "different user ids"},
                status=BridgeStatus.REJECTED,
                decided_at=now,
            )
            vetoed = True
            continue
        profile_merge(
            source=candidate,
            target=current,
            method=BridgeMethod.ALIAS,
            evidence={**evidence, "previous": "anonymous id"},
            now=now,
        )

    target = profile_resolve(_fresh(target))
    if vetoed:
        return target
    # The anonymous id's sessions that never had a profile join the user now.
    UserSession.objects.filter(neuron=neuron, anonymous_id=previous_id, profile__isnull=True).update(profile=target)
    BehaviorEvent.objects.filter(neuron=neuron, anonymous_id=previous_id, profile__isnull=True).update(profile=target)
    digest = identifier_hash(previous_id, namespace=ALIAS_NAMESPACE)
    try:
        with transaction.atomic():
            ProfileAlias.objects.get_or_create(
                neuron=neuron,
                identifier_hash=digest,
                defaults={"profile": target, "identifier_encrypted": encrypt(previous_id), "created_at": now},
            )
    except IntegrityError:
        pass  # a concurrent alias of the same id stored it first
    if session is not None:
        session.profile = target
        if session.identified_at is None:
            UserSession.objects.filter(pk=session.pk).update(identified_at=now)
            session.identified_at = now
    GlobalUserProfile.objects.filter(pk=target.pk).update(last_seen_at=now)
    return target
