"""Identity: which person (GlobalUserProfile) a session belongs to."""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from federation.models import Neuron
from privacy.crypto import encrypt, identifier_hash
from sessions_app.models import GlobalUserProfile, UserSession


def profile_resolve(profile: GlobalUserProfile) -> GlobalUserProfile:
    """Follow merged_into pointers to the surviving profile."""
    seen = {profile.pk}
    while profile.merged_into_id and profile.merged_into_id not in seen:
        seen.add(profile.merged_into_id)
        profile = profile.merged_into
    return profile


def profile_get_or_create_for_user_id(*, neuron: Neuron, user_id: str, now: datetime) -> GlobalUserProfile:
    """The profile of a user id, created exactly once even under concurrent identify calls.

    The unique (neuron, user_id_hash) constraint decides the race: the loser's
    INSERT fails inside a savepoint and it reads the winner's row.
    """
    digest = identifier_hash(user_id)
    for _ in range(3):
        profile = GlobalUserProfile.objects.filter(neuron=neuron, user_id_hash=digest).first()
        if profile is not None:
            return profile_resolve(profile)
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


@transaction.atomic
def profile_identify(*, session: UserSession, user_id: str, now: datetime | None = None) -> bool:
    """Attach the session to the profile of `user_id`. Returns True when its profile changed."""
    now = now or timezone.now()
    profile = profile_get_or_create_for_user_id(neuron=session.neuron, user_id=user_id, now=now)
    if session.profile_id == profile.pk:
        return False
    session.profile = profile
    session.save(update_fields=["profile"])
    GlobalUserProfile.objects.filter(pk=profile.pk).update(last_seen_at=now)
    return True
