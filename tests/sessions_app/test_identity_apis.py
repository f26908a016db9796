"""Identity API and admin: staff profile views, link decisions, splits, a session's own profile."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from privacy.models import AuditEntry
from sessions_app.identity import profile_find_for_user_id, profile_identify, profile_merge
from sessions_app.linking import identity_link_sweep
from sessions_app.models import BridgeMethod, BridgeStatus, GlobalUserProfile, ProfileMerge, SessionBridge
from tests.conftest import IPHONE_UA
from tests.sessions_app.factories import DeviceFingerprintFactory, GlobalUserProfileFactory, UserSessionFactory
from tests.sessions_app.test_apis import assert_problem
from tests.sessions_app.test_linking import visit

pytestmark = pytest.mark.django_db


def profile_url(profile, suffix: str = "") -> str:
    return f"/api/sessions/profiles/{profile.public_id}{suffix}"


@pytest.fixture
def merged(neuron):
    """A user profile that absorbed an anonymous device by fingerprint: (user, absorbed, merge)."""
    fp = DeviceFingerprintFactory(neuron=neuron)
    laptop = visit(neuron, fingerprint=fp, ip="10.1.0.0", profile=GlobalUserProfileFactory(neuron=neuron))
    profile_identify(session=laptop, user_id="u-1")
    phone = visit(neuron, fingerprint=fp, ip="10.1.0.0", device_type="mobile", browser="Mobile Safari", os="iOS")
    GlobalUserProfileFactory(neuron=neuron)  # an unrelated profile
    identity_link_sweep()
    user = profile_find_for_user_id(neuron=neuron, user_id="u-1")
    merge = ProfileMerge.objects.get(method=BridgeMethod.FINGERPRINT)
    phone.refresh_from_db()
    assert phone.profile == user
    return user, merge.source, merge


@pytest.fixture
def suggested(neuron):
    """Two anonymous devices with a network-only (suggested) link: (profile a, profile b, bridge)."""
    visit(neuron)
    visit(neuron)
    identity_link_sweep()
    bridge = SessionBridge.objects.get(status=BridgeStatus.SUGGESTED)
    return bridge.from_profile, bridge.to_profile, bridge


@pytest.fixture
def plain_user_client(db, django_user_model):
    client = APIClient()
    client.force_authenticate(django_user_model.objects.create_user("visitor", "v@example.com", "pw-visitor-1"))
    return client


# --- GET profile ----------------------------------------------------------------------------------


def test_staff_reads_a_profile_with_devices_sessions_and_merges(staff_client, merged):
    """The profile page: traits, both devices, both sessions, the merge record."""
    user, absorbed, merge = merged
    body = staff_client.get(profile_url(user)).json()
    assert body["profileId"] == str(user.public_id) and body["identified"] is True
    assert body["mergedInto"] is None
    assert {d["deviceType"] for d in body["devices"]} == {"desktop", "mobile"}
    assert len(body["sessions"]) == 2
    assert [(m["method"], m["undoneAt"]) for m in body["merges"]] == [("fingerprint", None), ("user_id", None)]
    assert body["merges"][0]["mergeId"] == merge.pk
    assert body["merges"][0]["sourceProfileId"] == str(absorbed.public_id)


def test_an_absorbed_profile_points_at_its_survivor(staff_client, merged):
    """Reading a merged-away profile says where it went."""
    user, absorbed, _ = merged
    assert staff_client.get(profile_url(absorbed)).json()["mergedInto"] == str(user.public_id)


def test_unknown_profile_is_a_problem_404(staff_client):
    """An id that names no profile: 404 problem details."""
    assert_problem(staff_client.get(f"/api/sessions/profiles/{uuid.uuid4()}"), 404)


def test_profile_api_needs_a_staff_user(api_client, plain_user_client, merged):
    """Anonymous: 403 (no challenge scheme for cookies); a signed-in non-staff user: 403."""
    user = merged[0]
    assert_problem(api_client.get(profile_url(user)), 403)
    assert_problem(plain_user_client.get(profile_url(user)), 403)
    assert_problem(plain_user_client.post(profile_url(user, "/split"), {}, format="json"), 403)


def test_a_session_token_does_not_open_the_staff_api(live_session, merged):
    """The browser's bearer token is not an operator credential."""
    client, _ = live_session
    assert_problem(client.get(profile_url(merged[0])), 403)


# --- links ----------------------------------------------------------------------------------------


def test_links_list_shows_confidence_and_evidence(staff_client, merged):
    """The profile's links, newest first, each with its score and the signals behind it."""
    user = merged[0]
    body = staff_client.get(profile_url(user, "/links")).json()
    methods = {link["method"]: link for link in body["results"]}
    assert set(methods) == {"user_id", "fingerprint"}
    fingerprint = methods["fingerprint"]
    assert fingerprint["status"] == "merged" and fingerprint["confidence"] >= 0.9
    assert "fingerprint" in fingerprint["evidence"]["signals"]
    assert methods["user_id"]["confidence"] == 1.0


def test_links_list_query_count_does_not_grow_with_links(staff_client, neuron, django_assert_max_num_queries):
    """No N+1: the list costs the same for 3 links or 12."""
    hub = GlobalUserProfileFactory(neuron=neuron)

    def add_links(n):
        for _ in range(n):
            other = GlobalUserProfileFactory(neuron=neuron)
            SessionBridge.objects.create(
                neuron=neuron, from_profile=other, to_profile=hub, method="network", confidence=0.5
            )

    add_links(3)
    with CaptureQueriesContext(connection) as few:
        assert len(staff_client.get(profile_url(hub, "/links")).json()["results"]) == 3
    add_links(9)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(staff_client.get(profile_url(hub, "/links")).json()["results"]) == 12


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "forged"},
        {"cursor": "cD1hYmM="},  # base64 of "p=abc": well formed, but no id is "abc" (was a 500)
        {"cursor": "cD05MjIzMzcyMDM2ODU0Nzc1ODA4"},  # "p=2**63": past a bigint
        {"pageSize": "ten"},
        {"pageSize": "0"},
        {"bogus": "1"},
    ],
)
def test_links_list_bad_page_parameters_are_a_400(staff_client, merged, params):
    """A cursor the API did not issue, a page size that is not a positive integer, or an unknown
    parameter is a 400 problem naming it, not a 404 nor a silently ignored value."""
    body = assert_problem(staff_client.get(profile_url(merged[0], "/links"), params), 400)
    assert set(body["errors"]) == set(params)


def test_links_of_an_unknown_profile_are_a_404(staff_client, merged):
    """An id that names no profile: 404 problem, not an empty list."""
    assert_problem(staff_client.get(f"/api/sessions/profiles/{uuid.uuid4()}/links"), 404)


def test_links_list_needs_a_staff_user(api_client, plain_user_client, merged):
    """Anonymous and non-staff callers get 403 and no link evidence."""
    url = profile_url(merged[0], "/links")
    for client in (api_client, plain_user_client):
        response = client.get(url)
        assert_problem(response, 403)
        assert "fingerprint" not in response.content.decode()


def link_state(bridge) -> tuple:
    """What a link decision would change: the link, both profiles, merges and the audit log."""
    bridge.refresh_from_db()
    return (
        bridge.status,
        bridge.decided_at,
        list(GlobalUserProfile.objects.order_by("pk").values_list("pk", "merged_into_id")),
        list(ProfileMerge.objects.order_by("pk").values_list("pk", "undone_at")),
        AuditEntry.objects.count(),
    )


@pytest.mark.parametrize("decision", ["accept", "reject"])
def test_deciding_a_suggested_link_needs_a_staff_user(api_client, plain_user_client, suggested, decision):
    """accept/reject by an anonymous or non-staff caller: 403, the link stays suggested, nothing merges."""
    a, _, bridge = suggested
    before = link_state(bridge)
    assert before[0] == BridgeStatus.SUGGESTED
    url = profile_url(a, f"/links/{bridge.pk}/{decision}")
    assert_problem(api_client.post(url), 403)
    assert_problem(plain_user_client.post(url), 403)
    assert link_state(bridge) == before


def test_rejecting_a_merged_link_needs_a_staff_user(api_client, plain_user_client, merged):
    """reject of a merged link by an anonymous or non-staff caller: 403, the merge is not undone."""
    user, _, merge = merged
    bridge = SessionBridge.objects.get(pk=merge.bridge_id)
    before = link_state(bridge)
    url = profile_url(user, f"/links/{bridge.pk}/reject")
    assert_problem(api_client.post(url), 403)
    assert_problem(plain_user_client.post(url), 403)
    assert link_state(bridge) == before


def test_accepting_a_suggested_link_merges_and_is_audited(staff_client, staff_user, suggested):
    """accept: the two profiles become one, the link is merged, the audit log says who."""
    a, b, bridge = suggested
    response = staff_client.post(profile_url(a, f"/links/{bridge.pk}/accept"))
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "merged"
    a.refresh_from_db()
    assert a.merged_into == b
    entry = AuditEntry.objects.get(action="identity.link.accept")
    assert entry.subject == f"bridge:{bridge.pk}" and entry.actor == f"user:{staff_user.pk}:staff"


def test_rejecting_a_suggested_link_keeps_profiles_apart_and_is_audited(staff_client, suggested):
    """reject: nothing merges, and the linker leaves the pair alone afterwards."""
    a, b, bridge = suggested
    assert staff_client.post(profile_url(b, f"/links/{bridge.pk}/reject")).json()["status"] == "rejected"
    identity_link_sweep()
    bridge.refresh_from_db()
    assert bridge.status == BridgeStatus.REJECTED
    assert GlobalUserProfile.objects.get(pk=a.pk).merged_into is None
    assert AuditEntry.objects.filter(action="identity.link.reject", subject=f"bridge:{bridge.pk}").exists()


def test_rejecting_a_merged_link_undoes_the_merge(staff_client, merged):
    """A wrong automatic merge is undone by rejecting its link."""
    user, absorbed, merge = merged
    response = staff_client.post(profile_url(user, f"/links/{merge.bridge_id}/reject"))
    assert response.status_code == 200
    absorbed.refresh_from_db()
    merge.refresh_from_db()
    assert absorbed.merged_into is None and merge.undone_at is not None


def test_accepting_twice_or_rejecting_twice_is_a_conflict(staff_client, suggested):
    """A decided link cannot be decided the same way again: 409 problem."""
    a, _, bridge = suggested
    staff_client.post(profile_url(a, f"/links/{bridge.pk}/accept"))
    assert_problem(staff_client.post(profile_url(a, f"/links/{bridge.pk}/accept")), 409)
    staff_client.post(profile_url(a, f"/links/{bridge.pk}/reject"))
    assert_problem(staff_client.post(profile_url(a, f"/links/{bridge.pk}/reject")), 409)


def test_accepting_a_link_between_two_users_is_refused(staff_client, neuron):
    """The user-id veto holds for operators: 409, nothing merged."""
    a = GlobalUserProfileFactory(neuron=neuron, user_id_hash="a" * 64)
    b = GlobalUserProfileFactory(neuron=neuron, user_id_hash="b" * 64)
    bridge = SessionBridge.objects.create(neuron=neuron, from_profile=a, to_profile=b, method="network", confidence=0.4)
    assert_problem(staff_client.post(profile_url(a, f"/links/{bridge.pk}/accept")), 409)
    a.refresh_from_db()
    assert a.merged_into is None and not AuditEntry.objects.filter(action="identity.link.accept").exists()


def test_unknown_link_or_a_link_of_another_profile_is_404(staff_client, suggested, merged):
    """Links are addressed through their profile: another profile's link is not found."""
    a, _, bridge = suggested
    user = merged[0]
    assert_problem(staff_client.post(profile_url(a, "/links/999999/accept")), 404)
    assert_problem(staff_client.post(profile_url(user, f"/links/{bridge.pk}/accept")), 404)
    assert_problem(staff_client.post(f"/api/sessions/profiles/{uuid.uuid4()}/links/{bridge.pk}/reject"), 404)


# --- split ----------------------------------------------------------------------------------------


def test_split_endpoint_restores_the_parts_and_is_audited(staff_client, staff_user, merged):
    """POST split: every merge into the profile is undone; the audit entry lists them."""
    user, absorbed, merge = merged
    response = staff_client.post(profile_url(user, "/split"), {}, format="json")
    assert response.status_code == 200, response.content
    undone = response.json()["undone"]
    assert merge.pk in {m["mergeId"] for m in undone}
    absorbed.refresh_from_db()
    assert absorbed.merged_into is None
    entry = AuditEntry.objects.get(action="identity.profile.split")
    assert entry.subject == f"profile:{user.public_id}" and merge.pk in entry.details["merges"]


def test_split_of_one_named_merge(staff_client, merged):
    """mergeId undoes only that merge: the user's identify merge stays."""
    user, _, merge = merged
    response = staff_client.post(profile_url(user, "/split"), {"mergeId": merge.pk}, format="json")
    assert [m["mergeId"] for m in response.json()["undone"]] == [merge.pk]
    assert ProfileMerge.objects.filter(target=user, undone_at__isnull=True).count() == 1


def test_split_needs_a_staff_user(api_client, plain_user_client, merged):
    """split by an anonymous or non-staff caller: 403, no merge undone, nothing audited."""
    user, absorbed, merge = merged
    audited = AuditEntry.objects.count()
    for client in (api_client, plain_user_client):
        assert_problem(client.post(profile_url(user, "/split"), {}, format="json"), 403)
        assert_problem(client.post(profile_url(user, "/split"), {"mergeId": merge.pk}, format="json"), 403)
    absorbed.refresh_from_db()
    assert absorbed.merged_into == user
    assert not ProfileMerge.objects.filter(undone_at__isnull=False).exists()
    assert AuditEntry.objects.count() == audited


def test_splitting_a_profile_never_merged_is_409(staff_client, neuron):
    """Nothing to split: a 409 problem, not a 500."""
    profile = GlobalUserProfileFactory(neuron=neuron)
    assert_problem(staff_client.post(profile_url(profile, "/split"), {}, format="json"), 409)


@pytest.mark.parametrize("payload", [{"mergeId": "x"}, {"mergeId": 0}, {"other": 1}, [1]])
def test_split_with_a_malformed_body_is_400(staff_client, merged, payload):
    """Bad split input names the field; nothing is undone."""
    user = merged[0]
    assert_problem(staff_client.post(profile_url(user, "/split"), payload, format="json"), 400)
    assert not ProfileMerge.objects.filter(undone_at__isnull=False).exists()


def test_split_naming_a_merge_of_another_profile_is_404(staff_client, merged, neuron):
    """A merge id that did not merge into this profile is not found."""
    a, b = GlobalUserProfileFactory(neuron=neuron), GlobalUserProfileFactory(neuron=neuron)
    other = profile_merge(source=a, target=b, method=BridgeMethod.NETWORK, confidence=0.95)
    assert_problem(staff_client.post(profile_url(merged[0], "/split"), {"mergeId": other.pk}, format="json"), 404)


# --- the session's own profile --------------------------------------------------------------------


def test_session_sees_its_preferences_and_linked_devices_without_their_identifiers(live_session, neuron):
    """Own view: preferences and each device's type, browser and last seen; no other ids."""
    client, body = live_session
    url = f"/api/sessions/{body['sessionId']}"
    response = client.put(url, {"userId": "u-9", "preferences": {"theme": "dark"}}, format="json")
    token = response.json()["token"]  # identify rotates the token
    laptop = UserSessionFactory(neuron=neuron, anonymous_id="laptop-anon-id")
    profile_identify(session=laptop, user_id="u-9")

    owner = APIClient(HTTP_USER_AGENT=IPHONE_UA)
    owner.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    own = owner.get(f"{url}/profile")
    assert own.status_code == 200, own.content
    data = own.json()
    assert data["identified"] is True and data["preferences"] == {"theme": "dark"}
    assert sorted((d["deviceType"], d["current"]) for d in data["devices"]) == [("desktop", False), ("mobile", True)]
    assert all(set(d) == {"deviceType", "browser", "os", "lastSeenAt", "current"} for d in data["devices"])
    assert "laptop-anon-id" not in own.content.decode()


def test_session_without_a_profile_sees_only_itself(live_session):
    """No profile yet: default preferences and the current device."""
    client, body = live_session
    data = client.get(f"/api/sessions/{body['sessionId']}/profile").json()
    assert data == {
        "identified": False,
        "preferences": {},
        "devices": [{**data["devices"][0], "current": True}],
    }


def test_a_session_token_cannot_read_another_sessions_profile(site_client, live_session):
    """Session A's token on session B's profile URL: 404, like a missing session."""
    client, _ = live_session
    other = site_client.post("/api/sessions/create", {}, format="json").json()
    assert_problem(client.get(f"/api/sessions/{other['sessionId']}/profile"), 404)


def test_own_profile_needs_a_token(api_client, live_session):
    """No bearer token: 401."""
    _, body = live_session
    assert_problem(api_client.get(f"/api/sessions/{body['sessionId']}/profile"), 401)


# --- admin ----------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-123")
    client.force_login(user)
    return client


def test_admin_profile_page_shows_devices_links_and_merges(admin_client, merged):
    """The change page renders the linked devices, the links with evidence and the merge history."""
    user, absorbed, merge = merged
    page = admin_client.get(f"/admin/sessions_app/globaluserprofile/{user.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Mobile Safari" in html and "fingerprint" in html and str(absorbed.public_id) in html


def test_admin_split_action_undoes_merges_and_reports_refusals(admin_client, merged, neuron):
    """The admin action splits merged profiles and reports one that has nothing to undo."""
    user, absorbed, _ = merged
    lonely = GlobalUserProfileFactory(neuron=neuron)
    response = admin_client.post(
        "/admin/sessions_app/globaluserprofile/",
        {"action": "split_profiles", "_selected_action": [user.pk, lonely.pk]},
        follow=True,
    )
    assert response.status_code == 200
    absorbed.refresh_from_db()
    assert absorbed.merged_into is None
    assert "no merge to undo" in response.content.decode()


def test_admin_accept_and_reject_actions(admin_client, suggested):
    """Bridge actions call the audited services."""
    a, _, bridge = suggested
    admin_client.post("/admin/sessions_app/sessionbridge/", {"action": "accept_links", "_selected_action": [bridge.pk]})
    bridge.refresh_from_db()
    assert bridge.status == BridgeStatus.MERGED
    admin_client.post("/admin/sessions_app/sessionbridge/", {"action": "reject_links", "_selected_action": [bridge.pk]})
    bridge.refresh_from_db()
    a.refresh_from_db()
    assert bridge.status == BridgeStatus.REJECTED and a.merged_into is None
    assert AuditEntry.objects.filter(action__in=["identity.link.accept", "identity.link.reject"]).count() == 2
