"""Identity services: identify, alias, merges, the user-id veto and exact splits."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from config.api.errors import Conflict
from privacy.crypto import decrypt, identifier_hash
from privacy.models import AuditEntry
from sessions_app.identity import (
    profile_alias,
    profile_find_for_anonymous_id,
    profile_find_for_user_id,
    profile_identify,
    profile_merge,
    profile_merge_undo,
    profile_split,
)
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
from tests.federation.factories import NeuronFactory
from tests.sessions_app.factories import (
    BehaviorEventFactory,
    DeviceFingerprintFactory,
    GlobalUserProfileFactory,
    UserSessionFactory,
)

pytestmark = pytest.mark.django_db


def anonymous_device(neuron, *, traits=None, preferences=None, events=2, **session_kwargs):
    """A session on its own anonymous profile, with a fingerprint and some events."""
    profile = GlobalUserProfileFactory(neuron=neuron, traits=traits or {}, preferences=preferences or {})
    fingerprint = DeviceFingerprintFactory(neuron=neuron, profile=profile)
    session = UserSessionFactory(neuron=neuron, profile=profile, fingerprint=fingerprint, **session_kwargs)
    for _ in range(events):
        BehaviorEventFactory(session=session, profile=profile)
    return session


def snapshot(*profiles: GlobalUserProfile) -> dict:
    """Everything a merge touches, per profile: rows owned, traits, preferences, seen times, pointer."""
    out = {}
    for profile in profiles:
        profile = GlobalUserProfile.objects.get(pk=profile.pk)
        out[profile.pk] = {
            "sessions": sorted(UserSession.objects.filter(profile=profile).values_list("pk", flat=True)),
            "anonymous_ids": sorted(UserSession.objects.filter(profile=profile).values_list("anonymous_id", flat=True)),
            "events": sorted(BehaviorEvent.objects.filter(profile=profile).values_list("pk", flat=True)),
            "fingerprints": sorted(DeviceFingerprint.objects.filter(profile=profile).values_list("pk", flat=True)),
            "aliases": sorted(ProfileAlias.objects.filter(profile=profile).values_list("pk", flat=True)),
            "traits": profile.traits,
            "preferences": profile.preferences,
            "first_seen_at": profile.first_seen_at,
            "last_seen_at": profile.last_seen_at,
            "merged_into": profile.merged_into_id,
        }
    return out


# --- identify -------------------------------------------------------------------------------------


def identify_at_once(sessions, *, user_id: str) -> None:
    """Identify every session as `user_id` from its own thread, all released together."""
    barrier = threading.Barrier(len(sessions))
    errors: list[BaseException] = []

    def identify(session):
        try:
            barrier.wait()
            profile_identify(session=session, user_id=user_id)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=identify, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_identify_with_neither_side_existing_creates_the_user_profile(neuron):
    """A session without a profile and an unknown user id: one new identified profile holds the session."""
    session = UserSessionFactory(neuron=neuron)
    assert profile_identify(session=session, user_id="u-1") is True
    profile = GlobalUserProfile.objects.get(neuron=neuron, user_id_hash=identifier_hash("u-1"))
    assert decrypt(profile.user_id_encrypted) == "u-1"
    session.refresh_from_db()
    assert session.profile == profile
    assert not ProfileMerge.objects.exists()


def test_identify_attaches_the_anonymous_ids_other_sessions_and_events(neuron):
    """Sessions and events of the same anonymous id without a profile join the user's profile."""
    earlier = UserSessionFactory(neuron=neuron, anonymous_id="anon-7")
    event = BehaviorEventFactory(session=earlier)
    current = UserSessionFactory(neuron=neuron, anonymous_id="anon-7")
    stranger = UserSessionFactory(neuron=neuron, anonymous_id="anon-8")
    profile_identify(session=current, user_id="u-1")
    profile = profile_find_for_user_id(neuron=neuron, user_id="u-1")
    assert set(UserSession.objects.filter(profile=profile)) == {earlier, current}
    event.refresh_from_db()
    stranger.refresh_from_db()
    assert event.profile == profile and stranger.profile is None


def test_identify_with_only_the_user_profile_existing_attaches_to_it(neuron):
    """An existing user profile is reused, never duplicated."""
    first = UserSessionFactory(neuron=neuron)
    profile_identify(session=first, user_id="u-1")
    second = UserSessionFactory(neuron=neuron)
    profile_identify(session=second, user_id="u-1")
    assert GlobalUserProfile.objects.filter(user_id_hash=identifier_hash("u-1")).count() == 1
    second.refresh_from_db()
    assert second.profile == first.profile


def test_identify_merges_the_anonymous_profile_into_a_new_user_profile(neuron):
    """Only the anonymous side exists: its sessions, events, fingerprints and traits move to the user."""
    session = anonymous_device(neuron, traits={"plan": "free"}, preferences={"theme": "dark"})
    anonymous = session.profile
    events = set(BehaviorEvent.objects.filter(profile=anonymous).values_list("pk", flat=True))
    assert profile_identify(session=session, user_id="u-1") is True

    user = profile_find_for_user_id(neuron=neuron, user_id="u-1")
    anonymous.refresh_from_db()
    assert anonymous.merged_into == user
    assert user.traits == {"plan": "free"} and user.preferences == {"theme": "dark"}
    assert set(BehaviorEvent.objects.filter(profile=user).values_list("pk", flat=True)) == events
    assert DeviceFingerprint.objects.get(pk=session.fingerprint_id).profile == user
    assert session.profile == user
    bridge = SessionBridge.objects.get()
    assert (bridge.method, bridge.status, bridge.confidence) == (BridgeMethod.USER_ID, BridgeStatus.MERGED, 1.0)
    assert bridge.from_profile == anonymous and bridge.to_profile == user


def test_identify_merges_into_the_existing_user_profile_and_user_traits_win(neuron):
    """Both sides exist: the identified profile survives and keeps its own trait values."""
    laptop = UserSessionFactory(neuron=neuron)
    profile_identify(session=laptop, user_id="u-1")
    user = profile_find_for_user_id(neuron=neuron, user_id="u-1")
    user.traits = {"name": "Ada"}
    user.save()
    phone = anonymous_device(neuron, traits={"name": "guest", "city": "Leeds"})
    profile_identify(session=phone, user_id="u-1")
    user.refresh_from_db()
    assert user.traits == {"name": "Ada", "city": "Leeds"}
    assert set(UserSession.objects.filter(profile=user)) == {laptop, phone}


def test_identify_again_with_the_same_user_id_changes_nothing(neuron):
    """A repeated identify is a no-op: no new merge, returns False."""
    session = anonymous_device(neuron)
    profile_identify(session=session, user_id="u-1")
    assert profile_identify(session=session, user_id="u-1") is False
    assert ProfileMerge.objects.count() == 1


def test_different_user_id_on_a_shared_device_is_never_merged(neuron):
    """User B signing in where user A was: two profiles stay apart, A keeps A's history."""
    session = anonymous_device(neuron)
    profile_identify(session=session, user_id="alice")
    alice = profile_find_for_user_id(neuron=neuron, user_id="alice")
    alice_events = set(BehaviorEvent.objects.filter(profile=alice).values_list("pk", flat=True))

    assert profile_identify(session=session, user_id="bob") is True
    bob = profile_find_for_user_id(neuron=neuron, user_id="bob")
    alice.refresh_from_db()
    assert alice.pk != bob.pk and alice.merged_into is None and bob.merged_into is None
    session.refresh_from_db()
    assert session.profile == bob
    assert set(BehaviorEvent.objects.filter(profile=alice).values_list("pk", flat=True)) == alice_events
    assert ProfileMerge.objects.filter(target=bob).count() == 0


def test_merging_two_identified_profiles_is_refused(neuron):
    """The veto holds for any caller of profile_merge, not only identify."""
    a = GlobalUserProfileFactory(neuron=neuron, user_id_hash=identifier_hash("a"))
    b = GlobalUserProfileFactory(neuron=neuron, user_id_hash=identifier_hash("b"))
    with pytest.raises(Conflict):
        profile_merge(source=a, target=b, method=BridgeMethod.FINGERPRINT, confidence=0.95)
    assert not ProfileMerge.objects.exists() and not SessionBridge.objects.exists()


def test_identify_on_another_neuron_creates_a_separate_profile(neuron):
    """User ids are per site: the same id on two neurons is two profiles."""
    other = NeuronFactory()
    here = UserSessionFactory(neuron=neuron)
    there = UserSessionFactory(neuron=other)
    profile_identify(session=here, user_id="u-1")
    profile_identify(session=there, user_id="u-1")
    here.refresh_from_db()
    there.refresh_from_db()
    assert here.profile_id != there.profile_id


def test_transitive_merges_resolve_and_split_back_step_by_step(neuron):
    """A into B, then B into the user: A resolves to the user; splits undo one level at a time."""
    a = anonymous_device(neuron, traits={"a": 1})
    b = anonymous_device(neuron, traits={"b": 2})
    pa, pb = a.profile, b.profile
    before = snapshot(pa, pb)
    profile_merge(source=pa, target=pb, method=BridgeMethod.FINGERPRINT, confidence=0.95)
    profile_identify(session=b, user_id="u-1")
    user = profile_find_for_user_id(neuron=neuron, user_id="u-1")
    user_before = snapshot(user)[user.pk]  # captured after the merges, for shape only
    assert set(UserSession.objects.filter(profile=user)) == {a, b}
    assert profile_find_for_anonymous_id(neuron=neuron, anonymous_id=a.anonymous_id) == user

    profile_split(profile=user, actor="staff")
    assert set(UserSession.objects.filter(profile=pb)) == {a, b}
    profile_split(profile=pb, actor="staff")
    assert snapshot(pa, pb) == before
    assert user_before["sessions"] and not UserSession.objects.filter(profile=user).exists()


# --- concurrency ----------------------------------------------------------------------------------


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL: SQLite serialises writers by design")
@pytest.mark.django_db(transaction=True)
def test_concurrent_identify_from_two_devices_ends_in_one_profile():
    """Two devices identify as the same user at once: one profile, both devices on it."""
    neuron = NeuronFactory()
    devices = [anonymous_device(neuron, traits={f"d{i}": i}) for i in range(2)]
    identify_at_once(devices, user_id="same-user")
    profiles = GlobalUserProfile.objects.filter(user_id_hash=identifier_hash("same-user"))
    assert profiles.count() == 1
    user = profiles.get()
    assert set(UserSession.objects.filter(profile=user)) == set(devices)
    assert user.traits == {"d0": 0, "d1": 1}
    assert ProfileMerge.objects.filter(target=user).count() == 2


# --- alias ----------------------------------------------------------------------------------------


def test_alias_of_an_anonymous_id_merges_its_profile_into_the_user(neuron):
    """alias(anonymousId, userId): the device's anonymous profile joins the user, recorded as alias."""
    device = anonymous_device(neuron, anonymous_id="anon-1")
    user = profile_alias(neuron=neuron, previous_id="anon-1", user_id="u-1")
    assert user.user_id_hash == identifier_hash("u-1")
    device.refresh_from_db()
    assert device.profile == user
    merge = ProfileMerge.objects.get()
    assert merge.method == BridgeMethod.ALIAS and merge.bridge.confidence == 1.0
    assert profile_find_for_anonymous_id(neuron=neuron, anonymous_id="anon-1") == user


def test_alias_before_any_session_resolves_later_lookups(neuron):
    """An alias of an id never seen is remembered: later sessions and identify calls find the user."""
    user = profile_alias(neuron=neuron, previous_id="anon-future", user_id="u-1")
    assert profile_find_for_anonymous_id(neuron=neuron, anonymous_id="anon-future") == user
    alias = ProfileAlias.objects.get()
    assert alias.identifier_hash != "anon-future" and decrypt(alias.identifier_encrypted) == "anon-future"


def test_alias_of_an_earlier_user_id_merges_both_users(neuron):
    """alias(oldUserId, newUserId): identify with the old id afterwards lands on the new profile."""
    old_session = anonymous_device(neuron)
    profile_identify(session=old_session, user_id="old-id")
    old = profile_find_for_user_id(neuron=neuron, user_id="old-id")
    new = profile_alias(neuron=neuron, previous_id="old-id", user_id="new-id")
    old.refresh_from_db()
    assert old.merged_into == new
    later = UserSessionFactory(neuron=neuron)
    profile_identify(session=later, user_id="old-id")
    later.refresh_from_db()
    assert later.profile == new
    assert GlobalUserProfile.objects.filter(user_id_hash__isnull=False, merged_into__isnull=True).count() == 1


def test_alias_of_a_device_belonging_to_another_user_is_vetoed(neuron):
    """An anonymous id whose sessions are another user's: no merge, a rejected bridge, no alias."""
    shared = anonymous_device(neuron, anonymous_id="family-tablet")
    profile_identify(session=shared, user_id="alice")
    alice = profile_find_for_user_id(neuron=neuron, user_id="alice")
    bob = profile_alias(neuron=neuron, previous_id="family-tablet", user_id="bob")
    alice.refresh_from_db()
    assert alice.merged_into is None and bob.pk != alice.pk
    bridge = SessionBridge.objects.get(method=BridgeMethod.ALIAS)
    assert bridge.status == BridgeStatus.REJECTED and bridge.evidence["veto"] == "different user ids"
    assert not ProfileAlias.objects.exists()


def test_alias_twice_is_idempotent(neuron):
    """Repeating an alias call merges nothing more and stores one alias."""
    anonymous_device(neuron, anonymous_id="anon-1")
    first = profile_alias(neuron=neuron, previous_id="anon-1", user_id="u-1")
    second = profile_alias(neuron=neuron, previous_id="anon-1", user_id="u-1")
    assert first == second
    assert ProfileMerge.objects.count() == 1 and ProfileAlias.objects.count() == 1


# --- split ----------------------------------------------------------------------------------------


def test_split_restores_exactly_the_state_before_the_merge(neuron):
    """Sessions, anonymous ids, events, fingerprints, traits, preferences and times all return."""
    now = timezone.now()
    user_session = anonymous_device(neuron, traits={"name": "Ada"}, preferences={"lang": "en"})
    profile_identify(session=user_session, user_id="u-1", now=now - timedelta(days=3))
    user = profile_find_for_user_id(neuron=neuron, user_id="u-1")
    anon = anonymous_device(neuron, traits={"name": "guest", "city": "Leeds"}, preferences={"theme": "dark"})
    anon_profile = anon.profile
    GlobalUserProfile.objects.filter(pk=anon_profile.pk).update(first_seen_at=now - timedelta(days=9))
    before = snapshot(user, anon_profile)

    merge = profile_merge(source=anon_profile, target=user, method=BridgeMethod.FINGERPRINT, confidence=0.97)
    assert snapshot(user, anon_profile) != before
    profile_split(profile=user, merge=merge, actor="staff@example.com")
    assert snapshot(user, anon_profile) == before
    merge.refresh_from_db()
    assert merge.undone_at is not None and merge.undone_by == "staff@example.com"
    assert merge.bridge.status == BridgeStatus.REJECTED


def test_split_keeps_changes_made_after_the_merge_and_returns_later_events(neuron):
    """Traits written after a merge survive the split; events recorded on moved sessions go back too."""
    user_session = anonymous_device(neuron, traits={"name": "Ada"})
    profile_identify(session=user_session, user_id="u-1")
    user = profile_find_for_user_id(neuron=neuron, user_id="u-1")
    anon = anonymous_device(neuron, traits={"city": "Leeds"})
    anon_profile = anon.profile
    merge = profile_merge(source=anon_profile, target=user, method=BridgeMethod.FINGERPRINT, confidence=0.97)
    user.refresh_from_db()
    user.traits = {**user.traits, "plan": "pro"}
    user.save()
    later = BehaviorEventFactory(session=anon, profile=user)

    profile_split(profile=user, merge=merge, actor="staff")
    user.refresh_from_db()
    later.refresh_from_db()
    assert user.traits == {"name": "Ada", "plan": "pro"}
    assert later.profile == anon_profile


def test_split_without_a_merge_named_undoes_every_merge_into_the_profile(neuron):
    """A profile split into all its parts: each absorbed profile gets its own rows back."""
    a, b, c = anonymous_device(neuron), anonymous_device(neuron), anonymous_device(neuron)
    before = snapshot(a.profile, b.profile, c.profile)
    profile_merge(source=a.profile, target=c.profile, method=BridgeMethod.FINGERPRINT, confidence=0.95)
    profile_merge(source=b.profile, target=c.profile, method=BridgeMethod.NETWORK, confidence=0.91)
    assert len(profile_split(profile=c.profile, actor="staff")) == 2
    assert snapshot(a.profile, b.profile, c.profile) == before


def test_splitting_a_profile_that_was_never_merged_is_a_conflict(neuron):
    """Nothing to undo: Conflict, nothing changes."""
    profile = GlobalUserProfileFactory(neuron=neuron)
    with pytest.raises(Conflict):
        profile_split(profile=profile, actor="staff")


def test_undoing_a_merge_twice_is_a_conflict(neuron):
    """A merge record is undone once."""
    a, b = anonymous_device(neuron), anonymous_device(neuron)
    merge = profile_merge(source=a.profile, target=b.profile, method=BridgeMethod.FINGERPRINT, confidence=0.95)
    profile_merge_undo(merge=merge, actor="staff")
    with pytest.raises(Conflict):
        profile_merge_undo(merge=merge, actor="staff")


def test_merging_a_profile_with_itself_records_nothing(neuron):
    """Already one profile (directly or through merges): no record, returns None."""
    a, b = anonymous_device(neuron), anonymous_device(neuron)
    profile_merge(source=a.profile, target=b.profile, method=BridgeMethod.FINGERPRINT, confidence=0.95)
    assert profile_merge(source=a.profile, target=b.profile, method=BridgeMethod.FINGERPRINT) is None
    assert ProfileMerge.objects.count() == 1


def test_a_device_known_to_be_shared_does_not_hand_its_anonymous_sessions_to_the_next_login(neuron):
    """After two users signed in on one anonymous id, an anonymous visit there stays unattributed."""
    first = UserSessionFactory(neuron=neuron, anonymous_id="family-tablet")
    profile_identify(session=first, user_id="alice")
    guest = UserSessionFactory(neuron=neuron, anonymous_id="family-tablet")
    second = UserSessionFactory(neuron=neuron, anonymous_id="family-tablet")
    profile_identify(session=second, user_id="bob")
    guest.refresh_from_db()
    assert guest.profile is None
    assert profile_find_for_user_id(neuron=neuron, user_id="bob") == second.profile


def test_restoring_on_a_shared_device_starts_anonymous(site_client, neuron):
    """After two users signed in on one browser, a restored (expired) session does not inherit a profile."""
    import time_machine

    from sessions_app.enrichment import request_meta_from
    from sessions_app.services import session_create

    meta = request_meta_from({"REMOTE_ADDR": "81.2.69.142"})
    first = session_create(neuron=neuron, request_meta=meta, anonymous_id="tablet")
    profile_identify(session=first.session, user_id="alice")
    second = session_create(neuron=neuron, request_meta=meta, anonymous_id="tablet")
    profile_identify(session=second.session, user_id="bob")
    with time_machine.travel(timezone.now() + timedelta(days=2)):
        again = session_create(
            neuron=neuron,
            request_meta=meta,
            restore={"sessionId": second.session.public_id, "token": second.token},
        )
    assert again.session.anonymous_id == "tablet" and again.session.pk != second.session.pk
    assert again.session.profile is None


def test_restoring_on_a_one_user_device_keeps_the_profile(neuron):
    """The usual case: the returning visitor's new session keeps their profile."""
    import time_machine

    from sessions_app.enrichment import request_meta_from
    from sessions_app.services import session_create

    meta = request_meta_from({"REMOTE_ADDR": "81.2.69.142"})
    first = session_create(neuron=neuron, request_meta=meta, anonymous_id="laptop")
    profile_identify(session=first.session, user_id="alice")
    with time_machine.travel(timezone.now() + timedelta(days=2)):
        again = session_create(
            neuron=neuron, request_meta=meta, restore={"sessionId": first.session.public_id, "token": first.token}
        )
    assert again.session.profile == profile_find_for_user_id(neuron=neuron, user_id="alice")


# --- shared devices (a family tablet) -------------------------------------------------------------


def test_a_family_tablet_signed_in_by_one_member_keeps_the_others_anonymous_sessions_apart(neuron):
    """Only the signed-in session joins the user: the tablet's anonymous sessions (anyone's) stay out."""
    sister = UserSessionFactory(neuron=neuron, anonymous_id="tablet", device_type="tablet")
    sister_event = BehaviorEventFactory(session=sister)
    mother = UserSessionFactory(neuron=neuron, anonymous_id="tablet", device_type="tablet")
    own_event = BehaviorEventFactory(session=mother)
    assert profile_identify(session=mother, user_id="mother") is True
    user = profile_find_for_user_id(neuron=neuron, user_id="mother")
    assert set(UserSession.objects.filter(profile=user)) == {mother}
    sister.refresh_from_db()
    sister_event.refresh_from_db()
    own_event.refresh_from_db()
    assert sister.profile is None and sister_event.profile is None
    assert own_event.profile == user


def test_identify_on_a_tablet_takes_its_session_out_of_the_devices_anonymous_profile(neuron):
    """The tablet's anonymous profile keeps its other sessions and events; nothing is merged."""
    profile = GlobalUserProfileFactory(neuron=neuron, traits={"theme": "kids"})
    earlier = UserSessionFactory(neuron=neuron, anonymous_id="tablet", device_type="tablet", profile=profile)
    earlier_event = BehaviorEventFactory(session=earlier, profile=profile)
    now = UserSessionFactory(neuron=neuron, anonymous_id="tablet", device_type="tablet", profile=profile)
    now_event = BehaviorEventFactory(session=now, profile=profile)
    profile_identify(session=now, user_id="mother")
    user = profile_find_for_user_id(neuron=neuron, user_id="mother")
    profile.refresh_from_db()
    assert profile.merged_into is None and not ProfileMerge.objects.exists()
    assert set(UserSession.objects.filter(profile=profile)) == {earlier}
    assert set(BehaviorEvent.objects.filter(profile=profile)) == {earlier_event}
    assert set(BehaviorEvent.objects.filter(profile=user)) == {now_event}
    assert user.traits == {}


def test_a_tablets_own_anonymous_profile_still_merges_and_splits_back(neuron):
    """A profile holding only the signing-in session is that person's: merged, and a split restores it."""
    session = anonymous_device(neuron, anonymous_id="tablet", device_type="tablet", traits={"lang": "fr"})
    anonymous = session.profile
    user_session = UserSessionFactory(neuron=neuron)
    profile_identify(session=user_session, user_id="mother")
    user = profile_find_for_user_id(neuron=neuron, user_id="mother")
    before = snapshot(user, anonymous)
    profile_identify(session=session, user_id="mother")
    anonymous.refresh_from_db()
    assert anonymous.merged_into == user
    assert snapshot(user, anonymous) != before
    profile_split(profile=user, actor="staff")
    after = snapshot(user, anonymous)
    # identify marks the user seen after merging: a split keeps what was written after the merge.
    assert after[user.pk].pop("last_seen_at") >= before[user.pk].pop("last_seen_at")
    assert after == before


def test_restoring_on_a_tablet_starts_anonymous_even_with_one_user(neuron):
    """A family tablet hands nobody's profile to the next visit, even before a second user signs in."""
    import time_machine

    from sessions_app.enrichment import DeviceInfo, RequestMeta
    from sessions_app.services import session_create

    meta = RequestMeta(
        ip_truncated="81.2.69.0", country="GB", device=DeviceInfo("tablet", "Mobile Safari", "", "iOS", ""), gpc=False
    )
    first = session_create(neuron=neuron, request_meta=meta, anonymous_id="tablet")
    profile_identify(session=first.session, user_id="mother")
    with time_machine.travel(timezone.now() + timedelta(days=2)):
        again = session_create(
            neuron=neuron, request_meta=meta, restore={"sessionId": first.session.public_id, "token": first.token}
        )
    assert again.session.anonymous_id == "tablet" and again.session.profile is None


def test_a_tablet_is_one_visitor_again_when_no_device_type_is_configured_shared(neuron, settings):
    """IDENTITY_SHARED_DEVICE_TYPES empty: Segment semantics, the anonymous id's sessions join the user."""
    settings.IDENTITY_SHARED_DEVICE_TYPES = []
    earlier = UserSessionFactory(neuron=neuron, anonymous_id="tablet", device_type="tablet")
    now = UserSessionFactory(neuron=neuron, anonymous_id="tablet", device_type="tablet")
    profile_identify(session=now, user_id="mother")
    earlier.refresh_from_db()
    assert earlier.profile == profile_find_for_user_id(neuron=neuron, user_id="mother")


def test_alias_of_a_tablets_anonymous_id_takes_only_the_calling_session(neuron):
    """Sign-up on a family tablet: the session joins the user, the tablet's id is not their alias."""
    guest = UserSessionFactory(neuron=neuron, anonymous_id="tablet", device_type="tablet")
    signing_up = UserSessionFactory(neuron=neuron, anonymous_id="tablet", device_type="tablet")
    user = profile_alias(neuron=neuron, previous_id="tablet", user_id="mother", session=signing_up)
    signing_up.refresh_from_db()
    guest.refresh_from_db()
    assert signing_up.profile == user and guest.profile is None
    assert not ProfileAlias.objects.exists() and not ProfileMerge.objects.exists()
    assert profile_find_for_anonymous_id(neuron=neuron, anonymous_id="tablet") == user  # its latest session


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL: SQLite serialises writers by design")
@pytest.mark.django_db(transaction=True)
def test_concurrent_identify_on_two_tablets_ends_in_one_profile():
    """Two family tablets sign in as one user at once: one profile with exactly the two sessions."""
    neuron = NeuronFactory()
    tablets = [UserSessionFactory(neuron=neuron, device_type="tablet") for _ in range(2)]
    guests = [UserSessionFactory(neuron=neuron, device_type="tablet", anonymous_id=t.anonymous_id) for t in tablets]
    identify_at_once(tablets, user_id="same-user")
    user = GlobalUserProfile.objects.get(user_id_hash=identifier_hash("same-user"))
    assert set(UserSession.objects.filter(profile=user)) == set(tablets)
    assert UserSession.objects.filter(pk__in=[g.pk for g in guests], profile__isnull=True).count() == 2


def test_a_second_user_signing_in_hands_the_devices_unsigned_sessions_back(neuron):
    """The veto fires on a computer: the first user keeps the sessions they signed in on, not the device's."""
    before = UserSessionFactory(neuron=neuron, anonymous_id="family-pc")
    before_event = BehaviorEventFactory(session=before)
    alice_session = UserSessionFactory(neuron=neuron, anonymous_id="family-pc")
    profile_identify(session=alice_session, user_id="alice")
    alice = profile_find_for_user_id(neuron=neuron, user_id="alice")
    before.refresh_from_db()
    assert before.profile == alice  # one user so far: Segment semantics, the device's history is hers
    bob_session = UserSessionFactory(neuron=neuron, anonymous_id="family-pc")
    profile_identify(session=bob_session, user_id="bob")
    before.refresh_from_db()
    before_event.refresh_from_db()
    alice_session.refresh_from_db()
    assert before.profile is None and before_event.profile is None
    assert alice_session.profile == alice and alice_session.identified_at is not None
    assert set(UserSession.objects.filter(profile=profile_find_for_user_id(neuron=neuron, user_id="bob"))) == {
        bob_session
    }
    entry = AuditEntry.objects.get(action="identity.device.shared")
    assert entry.subject == f"session:{bob_session.public_id}"
    assert entry.details == {"releasedSessions": [str(before.public_id)], "fromProfiles": [str(alice.public_id)]}
