"""Reads for profiles, their devices, sessions, links and merges."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Max, Q, QuerySet

from config.api.errors import NotFound
from sessions_app.models import GlobalUserProfile, ProfileMerge, SessionBridge, UserSession


def profile_get(*, public_id: uuid.UUID | str) -> GlobalUserProfile:
    profile = GlobalUserProfile.objects.select_related("merged_into", "neuron").filter(public_id=public_id).first()
    if profile is None:
        raise NotFound("No such profile.")
    return profile


def profile_family_ids(*, profile: GlobalUserProfile) -> list[int]:
    """The profile and every profile merged into it, directly or through others (one query per level)."""
    family = [profile.pk]
    level = [profile.pk]
    while level:
        level = list(
            GlobalUserProfile.objects.filter(merged_into_id__in=level)
            .exclude(pk__in=family)
            .values_list("pk", flat=True)
        )
        family += level
    return family


@dataclass(frozen=True)
class DeviceSummary:
    """One device of a profile: an anonymous id, with what its sessions say about it."""

    anonymous_id: str
    device_type: str
    browser: str
    os: str
    last_seen_at: datetime
    session_count: int


def profile_devices(*, profile: GlobalUserProfile) -> list[DeviceSummary]:
    rows = (
        UserSession.objects.filter(profile=profile)
        .values("anonymous_id", "device_type", "browser", "os")
        .annotate(last_seen_at=Max("last_activity_at"), session_count=Count("pk"))
        .order_by("-last_seen_at")
    )
    return [DeviceSummary(**row) for row in rows]


def profile_sessions(*, profile: GlobalUserProfile, limit: int = 50) -> QuerySet[UserSession]:
    return UserSession.objects.filter(profile=profile).order_by("-last_activity_at")[:limit]


def profile_merges(*, profile: GlobalUserProfile) -> QuerySet[ProfileMerge]:
    return ProfileMerge.objects.filter(target=profile).select_related("source").order_by("-merged_at", "-pk")


def bridge_list_for_profile(*, profile: GlobalUserProfile) -> QuerySet[SessionBridge]:
    """Links touching the profile or any profile merged into it, with both sides' public ids."""
    family = profile_family_ids(profile=profile)
    return (
        SessionBridge.objects.filter(Q(from_profile_id__in=family) | Q(to_profile_id__in=family))
        .select_related("from_profile", "to_profile")
        .order_by("-id")
    )


def bridge_get_for_profile(*, profile: GlobalUserProfile, bridge_id: int) -> SessionBridge:
    bridge = bridge_list_for_profile(profile=profile).filter(pk=bridge_id).first()
    if bridge is None:
        raise NotFound("No such link for this profile.")
    return bridge


def merge_get_for_profile(*, profile: GlobalUserProfile, merge_id: int) -> ProfileMerge:
    merge = ProfileMerge.objects.filter(pk=merge_id, target=profile).first()
    if merge is None:
        raise NotFound("No such merge into this profile.")
    return merge
