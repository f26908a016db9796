"""Personalization API: success, bad input, credentials and consent for every endpoint."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from personalization.models import ArchetypeMembership, ProfileInterest, Segment, SessionInterest
from personalization.services import interest_update_from_events, recommendations_compute, segments_materialize
from privacy.models import AuditEntry
from sessions_app.models import GlobalUserProfile
from tests.conftest import IPHONE_UA
from tests.helpers import assert_problem
from tests.personalization.factories import (
    ArchetypeFactory,
    ContentSlotFactory,
    ContentVariantFactory,
    SegmentFactory,
)
from tests.sessions_app.factories import BehaviorEventFactory, GlobalUserProfileFactory, UserSessionFactory

pytestmark = pytest.mark.django_db

SEGMENTS = "/api/personalization/segments"
ARCHETYPES = "/api/personalization/archetypes"
NO_PERSONALIZATION = {"analytics": True, "personalization": False}


def bearer(session) -> APIClient:
    client = APIClient(REMOTE_ADDR="81.2.69.142", HTTP_USER_AGENT=IPHONE_UA)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {session.factory_token}")
    return client


def token_session(**kwargs):
    token = uuid.uuid4().hex * 2
    session = UserSessionFactory(factory_token=token, **kwargs)
    session.factory_token = token
    return session


# --- segments CRUD (staff) ----------------------------------------------------


def test_staff_creates_reads_updates_and_deletes_a_segment(staff_client, neuron):
    """The full CRUD cycle of a rule segment."""
    rule = {"all": [{"field": "device", "op": "eq", "value": "mobile"}]}
    created = staff_client.post(
        SEGMENTS, {"neuronId": neuron.slug, "name": "Mobile visitors", "rule": rule}, format="json"
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["slug"] == "mobile-visitors" and body["rule"] == rule and body["size"] == 0
    url = f"{SEGMENTS}/{body['id']}"

    assert staff_client.get(url).json()["name"] == "Mobile visitors"
    patched = staff_client.patch(url, {"name": "Phones", "isActive": False}, format="json")
    assert patched.status_code == 200
    assert patched.json()["name"] == "Phones" and patched.json()["isActive"] is False

    assert staff_client.delete(url).status_code == 204
    assert_problem(staff_client.get(url), 404)
    actions = list(AuditEntry.objects.order_by("seq").values_list("action", "subject"))
    subject = f"segment:{body['id']}"
    assert actions == [("segment.create", subject), ("segment.update", subject), ("segment.delete", subject)]


def test_invalid_rule_is_a_400_naming_the_bad_node(staff_client, neuron):
    """A bad rule document answers 400 with the path of the bad node, and nothing is stored."""
    rule = {"any": [{"field": "device", "op": "eq", "value": "mobile"}, {"not": {"field": "country", "op": "eq"}}]}
    body = assert_problem(
        staff_client.post(SEGMENTS, {"neuronId": neuron.slug, "name": "x", "rule": rule}, format="json"), 400
    )
    assert "rule.any[1].not.value" in body["errors"]
    assert not Segment.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "x", "rule": {"field": "identified", "op": "eq", "value": True}}, "neuronId"),
        ({"neuronId": "nope", "name": "x", "rule": {"field": "identified", "op": "eq", "value": True}}, "neuronId"),
        ({"neuronId": "{neuron}", "name": "x", "rule": [1]}, "rule"),
        ({"neuronId": "{neuron}", "name": 5, "rule": {"field": "identified", "op": "eq", "value": True}}, "name"),
        ({"neuronId": "{neuron}", "name": "x", "rule": {}, "owner": "me"}, "owner"),
    ],
)
def test_bad_segment_input_is_a_400(staff_client, neuron, payload, field):
    """Missing, mistyped or unknown fields are 400 problems naming the field."""
    payload = {k: (neuron.slug if v == "{neuron}" else v) for k, v in payload.items()}
    body = assert_problem(staff_client.post(SEGMENTS, payload, format="json"), 400)
    assert any(key.startswith(field) for key in body["errors"])


def test_duplicate_segment_slug_is_a_409(staff_client, neuron):
    """A slug already used on the site is a conflict."""
    SegmentFactory(neuron=neuron, slug="vip")
    payload = {"neuronId": neuron.slug, "name": "VIP", "rule": {"field": "identified", "op": "eq", "value": True}}
    assert_problem(staff_client.post(SEGMENTS, payload, format="json"), 409)


def test_segment_endpoints_need_a_staff_user(neuron, django_user_model):
    """Anonymous callers get 401/403; non-staff users get 403."""
    segment = SegmentFactory(neuron=neuron)
    anonymous = APIClient()
    assert anonymous.get(SEGMENTS).status_code in (401, 403)
    assert anonymous.delete(f"{SEGMENTS}/{segment.pk}").status_code in (401, 403)
    user = APIClient()
    user.force_authenticate(django_user_model.objects.create_user("user", "u@example.com", "pw-user-12345"))
    assert_problem(user.get(SEGMENTS), 403)
    assert Segment.objects.filter(pk=segment.pk).exists()


@pytest.fixture
def user_client(db, django_user_model):
    """A signed-in user who is not staff."""
    client = APIClient()
    client.force_authenticate(django_user_model.objects.create_user("user", "u@example.com", "pw-user-12345"))
    return client


def assert_refused_anonymous(response) -> dict:
    """No credentials: 401 or 403 (cookie auth has no challenge scheme), as problem details."""
    assert response.status_code in (401, 403), response.content
    return assert_problem(response, response.status_code)


def segment_state(segment) -> tuple:
    segment.refresh_from_db()
    return (segment.name, segment.slug, segment.rule, segment.is_active, segment.updated_at)


@pytest.mark.parametrize("client_name", ["anonymous", "user_client"])
def test_creating_a_segment_needs_a_staff_user(request, neuron, client_name):
    """POST segments without credentials is 401/403, by a non-staff user 403; nothing is stored or audited."""
    payload = {"neuronId": neuron.slug, "name": "Mobile", "rule": {"field": "device", "op": "eq", "value": "mobile"}}
    if client_name == "anonymous":
        assert_refused_anonymous(APIClient().post(SEGMENTS, payload, format="json"))
    else:
        assert_problem(request.getfixturevalue(client_name).post(SEGMENTS, payload, format="json"), 403)
    assert not Segment.objects.exists()
    assert not AuditEntry.objects.exists()


def test_reading_a_segment_needs_a_staff_user(neuron, user_client):
    """GET one segment: 401/403 anonymous, 403 for a non-staff user, with no segment data in the body."""
    segment = SegmentFactory(neuron=neuron, name="Secret segment")
    url = f"{SEGMENTS}/{segment.pk}"
    anonymous, user = APIClient().get(url), user_client.get(url)
    assert_refused_anonymous(anonymous)
    assert_problem(user, 403)
    assert "Secret segment" not in anonymous.content.decode() + user.content.decode()


def test_changing_a_segment_needs_a_staff_user(neuron, user_client):
    """PATCH by an anonymous caller (401/403) or a non-staff user (403) changes nothing."""
    segment = SegmentFactory(neuron=neuron)
    before = segment_state(segment)
    url = f"{SEGMENTS}/{segment.pk}"
    change = {"name": "Hijacked", "isActive": False}
    assert_refused_anonymous(APIClient().patch(url, change, format="json"))
    assert_problem(user_client.patch(url, change, format="json"), 403)
    assert segment_state(segment) == before
    assert not AuditEntry.objects.exists()


def test_changing_an_unknown_segment_is_a_404(staff_client):
    """PATCH of an id that names no segment: 404 problem, nothing created or audited."""
    assert_problem(staff_client.patch(f"{SEGMENTS}/999999", {"name": "x"}, format="json"), 404)
    assert not Segment.objects.exists()
    assert not AuditEntry.objects.exists()


def test_deleting_a_segment_needs_a_staff_user(neuron, user_client):
    """DELETE by a non-staff user is 403 and the segment stays, unaudited."""
    segment = SegmentFactory(neuron=neuron)
    assert_problem(user_client.delete(f"{SEGMENTS}/{segment.pk}"), 403)
    assert Segment.objects.filter(pk=segment.pk).exists()
    assert not AuditEntry.objects.exists()


def test_deleting_an_unknown_segment_is_a_404(staff_client, neuron):
    """DELETE of an id that names no segment: 404 problem; other segments are untouched."""
    segment = SegmentFactory(neuron=neuron)
    assert_problem(staff_client.delete(f"{SEGMENTS}/{segment.pk + 1000}"), 404)
    assert list(Segment.objects.values_list("pk", flat=True)) == [segment.pk]
    assert not AuditEntry.objects.exists()


def test_segment_list_filters_by_site_in_constant_queries(staff_client, neuron, django_assert_num_queries):
    """Listing is one query for the site, one for the page, whatever the number of segments."""
    for _ in range(5):
        SegmentFactory(neuron=neuron)
    SegmentFactory()  # another site's
    with django_assert_num_queries(2):  # the site, the page
        response = staff_client.get(SEGMENTS, {"neuronId": neuron.slug})
    assert response.status_code == 200
    assert len(response.json()["results"]) == 5
    assert_problem(staff_client.get(SEGMENTS, {"neuronId": "missing"}), 404)
    assert_problem(staff_client.get(SEGMENTS, {"bogus": "1"}), 400)


def test_unknown_segment_is_a_404_and_bad_patch_is_a_400(staff_client, neuron):
    """A missing id is 404; a patch with an invalid rule is 400 and changes nothing."""
    assert_problem(staff_client.get(f"{SEGMENTS}/999999"), 404)
    segment = SegmentFactory(neuron=neuron)
    body = assert_problem(
        staff_client.patch(f"{SEGMENTS}/{segment.pk}", {"rule": {"all": [{"field": "pageViews"}]}}, format="json"),
        400,
    )
    assert "rule.all[0].op" in body["errors"]
    segment.refresh_from_db()
    assert segment.rule == {"field": "device", "op": "eq", "value": "mobile"}


def test_materialized_members_are_listed_in_constant_queries(staff_client, neuron, django_assert_num_queries):
    """The stored list of a segment pages through its sessions; the query count does not grow."""
    profile = GlobalUserProfileFactory(neuron=neuron)
    sessions = [UserSessionFactory(neuron=neuron, device_type="mobile", profile=profile) for _ in range(4)]
    UserSessionFactory(neuron=neuron, device_type="desktop")
    segment = SegmentFactory(neuron=neuron)
    segments_materialize(neuron=neuron)
    url = f"{SEGMENTS}/{segment.pk}/members"
    with django_assert_num_queries(2):  # the segment, the page
        response = staff_client.get(url, {"pageSize": 3})
    body = response.json()
    assert [m["sessionId"] for m in body["results"]] == [str(s.public_id) for s in reversed(sessions)][:3]
    assert body["results"][0]["profileId"] == str(profile.public_id)
    rest = staff_client.get(body["next"]).json()
    assert len(rest["results"]) == 1 and rest["next"] is None
    assert_problem(staff_client.get(f"{SEGMENTS}/999999/members"), 404)
    assert APIClient().get(url).status_code in (401, 403)


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "forged"},
        {"cursor": "cD1hYmM="},  # base64 of "p=abc": well formed, but no id is "abc" (was a 500)
        {"cursor": "cD05MjIzMzcyMDM2ODU0Nzc1ODA4"},  # "p=2**63": past a bigint
        {"pageSize": "ten"},
        {"pageSize": "0"},
        {"pageSize": "-3"},
        {"bogus": "1"},
    ],
)
def test_members_bad_page_parameters_are_a_400(staff_client, neuron, params):
    """A cursor the API did not issue, a page size that is not a positive integer, or an unknown
    parameter is a 400 problem naming it, not a 404 nor a silently ignored value."""
    segment = SegmentFactory(neuron=neuron)
    UserSessionFactory(neuron=neuron, device_type="mobile")
    segments_materialize(neuron=neuron)
    body = assert_problem(staff_client.get(f"{SEGMENTS}/{segment.pk}/members", params), 400)
    assert set(body["errors"]) == set(params)


@pytest.mark.parametrize("params", [{"pageSize": "many"}, {"pageSize": "0"}, {"cursor": "forged"}])
def test_segment_list_bad_page_parameters_are_a_400(staff_client, neuron, params):
    """The segment list refuses the same page parameters as the member list."""
    SegmentFactory(neuron=neuron)
    body = assert_problem(staff_client.get(SEGMENTS, params), 400)
    assert set(body["errors"]) == set(params)


def test_members_need_a_staff_user(neuron, user_client):
    """The member list is refused to a non-staff user: 403, with no session id in the body."""
    session = UserSessionFactory(neuron=neuron, device_type="mobile")
    segment = SegmentFactory(neuron=neuron)
    segments_materialize(neuron=neuron)
    response = user_client.get(f"{SEGMENTS}/{segment.pk}/members")
    assert_problem(response, 403)
    assert str(session.public_id) not in response.content.decode()


@pytest.mark.parametrize("params", [{"neuronId": "x" * 65}, {"bogus": "1"}, {"neuronId": "a", "limit": "3"}])
def test_archetypes_bad_parameters_are_a_400(staff_client, neuron, params):
    """An over-long neuronId or an unknown parameter is a 400 problem naming the parameter."""
    body = assert_problem(staff_client.get(ARCHETYPES, params), 400)
    assert set(body["errors"]) <= set(params) and body["errors"]


def test_archetypes_of_an_unknown_site_are_a_404(staff_client, neuron):
    """neuronId that names no site: 404 problem, not an empty list (nor every site's archetypes)."""
    ArchetypeFactory(neuron=neuron)
    assert_problem(staff_client.get(ARCHETYPES, {"neuronId": "no-such-site"}), 404)


def test_archetypes_need_a_staff_user(neuron, user_client):
    """A non-staff user gets 403 and no archetype; anonymous 401/403."""
    ArchetypeFactory(neuron=neuron, key="runners")
    response = user_client.get(ARCHETYPES)
    assert_problem(response, 403)
    assert "runners" not in response.content.decode()
    assert_refused_anonymous(APIClient().get(ARCHETYPES, {"neuronId": neuron.slug}))


def test_archetypes_are_listed_for_staff(staff_client, neuron):
    """Archetypes with their labels and sizes are readable by staff, and by nobody else."""
    ArchetypeFactory(neuron=neuron, key="runners", label="Running & Shoes", size=12, top_categories=["running"])
    body = staff_client.get("/api/personalization/archetypes", {"neuronId": neuron.slug}).json()
    assert body["results"][0]["key"] == "runners" and body["results"][0]["size"] == 12
    assert APIClient().get("/api/personalization/archetypes").status_code in (401, 403)


# --- content slots --------------------------------------------------------------


def content(session, slots: str):
    return bearer(session).get(f"/api/personalization/{session.public_id}/content", {"slots": slots})


def test_targeted_variant_is_chosen_with_its_reason(neuron):
    """A visitor in the targeted segment gets that variant; the reason names the segment."""
    session = token_session(neuron=neuron, device_type="mobile")
    SegmentFactory(neuron=neuron, slug="phones", rule={"field": "device", "op": "eq", "value": "mobile"})
    hero = ContentSlotFactory(neuron=neuron, key="hero")
    ContentVariantFactory(slot=hero, key="generic", is_default=True)
    ContentVariantFactory(slot=hero, key="app-promo", priority=10, targeting={"segments": ["phones"]})
    ContentVariantFactory(slot=hero, key="never", priority=5, targeting={"segments": ["nobody"]})

    response = content(session, "hero")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["personalized"] is True
    choice = body["slots"]["hero"]
    assert choice["variant"] == "app-promo" and choice["content"] == {"title": "app-promo"}
    assert choice["reason"]["code"] == "targeted"
    assert choice["reason"]["matched"] == {"segments": ["phones"]}


def test_highest_priority_matching_variant_wins_and_interest_thresholds_apply(neuron):
    """Among matching variants the highest priority wins; an unmet interest threshold rules one out."""
    session = token_session(neuron=neuron)
    now = timezone.now()
    events = [BehaviorEventFactory(session=session, page_path="/shoes", timestamp=now, received_at=now)] * 1
    interest_update_from_events(session=session, events=events)
    slot = ContentSlotFactory(neuron=neuron, key="sidebar")
    ContentVariantFactory(slot=slot, key="shoe-fan", priority=1, targeting={"interests": {"shoes": 0.5}})
    ContentVariantFactory(slot=slot, key="shoe-addict", priority=9, targeting={"interests": {"shoes": 5}})
    choice = content(session, "sidebar").json()["slots"]["sidebar"]
    assert choice["variant"] == "shoe-fan"
    assert choice["reason"]["matched"]["interests"]["shoes"] == pytest.approx(1.0, rel=1e-3)


def test_archetype_targeting(neuron):
    """A variant for an archetype is served to profiles in it."""
    profile = GlobalUserProfileFactory(neuron=neuron)
    session = token_session(neuron=neuron, profile=profile)
    archetype = ArchetypeFactory(neuron=neuron, key="runners", centroid={"running": 1.0})
    ArchetypeMembership.objects.create(profile=profile, archetype=archetype, distance=0.1)
    slot = ContentSlotFactory(neuron=neuron, key="hero")
    ContentVariantFactory(slot=slot, key="marathon", targeting={"archetypes": ["runners"]})
    choice = content(session, "hero").json()["slots"]["hero"]
    assert choice["variant"] == "marathon" and choice["reason"]["matched"] == {"archetype": "runners"}


def test_without_personalization_consent_defaults_are_served_and_the_reason_says_so(neuron):
    """No personalization consent: the default of every slot, reason no-consent."""
    session = token_session(neuron=neuron, device_type="mobile", consent=NO_PERSONALIZATION)
    SegmentFactory(neuron=neuron, slug="phones")
    hero = ContentSlotFactory(neuron=neuron, key="hero")
    ContentVariantFactory(slot=hero, key="generic", is_default=True)
    ContentVariantFactory(slot=hero, key="app-promo", priority=10, targeting={"segments": ["phones"]})
    body = content(session, "hero").json()
    assert body["personalized"] is False
    assert body["slots"]["hero"]["variant"] == "generic"
    assert body["slots"]["hero"]["reason"]["code"] == "no-consent"
    assert "consent" in body["slots"]["hero"]["reason"]["detail"]


def test_no_match_falls_back_to_the_default_or_to_nothing(neuron):
    """Without a matching variant the default is served; a slot without default returns null."""
    session = token_session(neuron=neuron)
    with_default = ContentSlotFactory(neuron=neuron, key="hero")
    ContentVariantFactory(slot=with_default, key="generic", is_default=True)
    ContentVariantFactory(slot=with_default, key="x", targeting={"segments": ["nobody"]})
    bare = ContentSlotFactory(neuron=neuron, key="footer")
    ContentVariantFactory(slot=bare, key="y", targeting={"segments": ["nobody"]})
    slots = content(session, "hero,footer").json()["slots"]
    assert slots["hero"]["variant"] == "generic" and slots["hero"]["reason"]["code"] == "default"
    assert slots["footer"] == {
        "variant": None,
        "content": None,
        "reason": {"code": "no-match", "detail": "No variant matched and the slot has no default."},
    }


def test_content_bad_input_and_unknown_slots(neuron):
    """Missing or malformed slot lists are 400; a slot that does not exist is 404 naming it."""
    session = token_session(neuron=neuron)
    ContentSlotFactory(neuron=neuron, key="hero")
    url = f"/api/personalization/{session.public_id}/content"
    client = bearer(session)
    assert_problem(client.get(url), 400)
    assert_problem(client.get(url, {"slots": " , "}), 400)
    assert_problem(client.get(url, {"slots": "hero,<script>"}), 400)
    assert_problem(client.get(url, {"slots": ",".join(f"s{i}" for i in range(21))}), 400)
    body = assert_problem(client.get(url, {"slots": "hero,nope"}), 404)
    assert body["errors"] == {"slots": ["nope"]}
    # Another site's slot of the same name is unknown here.
    other = ContentSlotFactory(key="sidebar")
    assert other.neuron != neuron
    assert_problem(client.get(url, {"slots": "sidebar"}), 404)


def test_session_endpoints_need_the_sessions_own_token(neuron):
    """No token is 401, a bad token 401, another session's token 404 (no oracle), every endpoint."""
    mine, other = token_session(neuron=neuron), token_session(neuron=neuron)
    for suffix in ("content?slots=hero", "recommendations", "interests", "preferences"):
        url = f"/api/personalization/{mine.public_id}/{suffix}"
        assert_problem(APIClient().get(url), 401)
        wrong = APIClient()
        wrong.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
        assert_problem(wrong.get(url), 401)
        assert_problem(bearer(other).get(url), 404)


def test_changing_preferences_needs_the_sessions_own_token(neuron):
    """PUT preferences with no token or a bad one is 401, with another session's token 404; no
    profile gets the change (neither the URL's session nor the token's)."""
    profile = GlobalUserProfileFactory(neuron=neuron, preferences={"theme": "light"})
    mine = token_session(neuron=neuron, profile=profile)
    other_profile = GlobalUserProfileFactory(neuron=neuron, preferences={"theme": "light"})
    other = token_session(neuron=neuron, profile=other_profile)
    bare = token_session(neuron=neuron)  # no profile yet: a write would create one
    change = {"theme": "dark", "layout": {"compact": True}}
    for session in (mine, bare):
        url = f"/api/personalization/{session.public_id}/preferences"
        assert_problem(APIClient().put(url, change, format="json"), 401)
        wrong = APIClient()
        wrong.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
        assert_problem(wrong.put(url, change, format="json"), 401)
        assert_problem(bearer(other).put(url, change, format="json"), 404)
    profile.refresh_from_db()
    other_profile.refresh_from_db()
    bare.refresh_from_db()
    assert profile.preferences == {"theme": "light"} and other_profile.preferences == {"theme": "light"}
    assert bare.profile_id is None
    assert GlobalUserProfile.objects.count() == 2


def test_ended_session_token_is_refused(neuron):
    """A token of an ended session no longer opens personalization."""
    session = token_session(neuron=neuron, ended_at=timezone.now())
    assert_problem(bearer(session).get(f"/api/personalization/{session.public_id}/interests"), 401)


# --- recommendations ---------------------------------------------------------


def item_view(session, item, *, name="Product Viewed", at=None):
    at = at or timezone.now()
    return BehaviorEventFactory(
        session=session,
        event_type="custom",
        event_name=name,
        properties={"productId": item},
        timestamp=at,
        received_at=at,
    )


def catalogue(neuron):
    """Visitors who saw A also saw B and C; Z is popular everywhere."""
    for i in range(6):
        s = UserSessionFactory(neuron=neuron)
        item_view(s, "A")
        item_view(s, "B")
        if i < 3:
            item_view(s, "C")
    for _ in range(8):
        s = UserSessionFactory(neuron=neuron)
        item_view(s, "Z")
        item_view(s, "Y")
    recommendations_compute(neuron=neuron)


def recommendations(session, **params):
    return bearer(session).get(f"/api/personalization/{session.public_id}/recommendations", params)


def test_recommendations_come_from_co_occurrence_and_exclude_seen_items(neuron):
    """After viewing A and B, C (seen with them) comes first; A and B are never recommended."""
    catalogue(neuron)
    session = token_session(neuron=neuron)
    item_view(session, "A")
    item_view(session, "B")
    body = recommendations(session, limit=3).json()
    assert body["personalized"] is True and body["slot"] == "viewed-together"
    items = [r["itemId"] for r in body["items"]]
    assert items[0] == "C" and body["items"][0]["reason"] == "together" and body["items"][0]["because"] in {"A", "B"}
    assert "A" not in items and "B" not in items
    assert [r["reason"] for r in body["items"][1:]] == ["popular", "popular"]
    assert items[1:] == ["Y", "Z"]


def test_a_new_visitor_gets_popular_items(neuron):
    """No history: popularity fills the list."""
    catalogue(neuron)
    body = recommendations(token_session(neuron=neuron), limit=2).json()
    assert [(r["itemId"], r["reason"]) for r in body["items"]] == [("Y", "popular"), ("Z", "popular")]


def test_recommendations_without_consent_are_popular_only(neuron):
    """No personalization consent: popularity, and the visitor's history is not used."""
    catalogue(neuron)
    session = token_session(neuron=neuron, consent=NO_PERSONALIZATION)
    item_view(session, "A")
    body = recommendations(session, limit=10).json()
    assert body["personalized"] is False and "consent" in body["reason"]
    assert all(r["reason"] == "popular" for r in body["items"])


def test_bought_together_uses_purchases(neuron):
    """The bought-together slot learns from purchases only."""
    for _ in range(3):
        s = UserSessionFactory(neuron=neuron)
        item_view(s, "tent", name="Order Completed")
        item_view(s, "stove", name="Order Completed")
        item_view(s, "hat")  # viewed, not bought
    recommendations_compute(neuron=neuron)
    session = token_session(neuron=neuron)
    item_view(session, "tent", name="Order Completed")
    body = recommendations(session, slot="bought-together", limit=5).json()
    assert [r["itemId"] for r in body["items"]] == ["stove"]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 51}, {"limit": "ten"}, {"slot": "nope"}, {"x": "1"}])
def test_recommendation_bad_input_is_a_400(neuron, params):
    """Limits out of range, unknown slots and unknown parameters are 400 problems."""
    assert_problem(recommendations(token_session(neuron=neuron), **params), 400)


# --- interests -------------------------------------------------------------------


def test_interests_endpoint_shows_vectors_segments_and_archetype(neuron):
    """The visitor's top interests, live segments and archetype are readable with the token."""
    profile = GlobalUserProfileFactory(neuron=neuron)
    session = token_session(neuron=neuron, profile=profile, device_type="mobile")
    SegmentFactory(neuron=neuron, slug="phones")
    now = timezone.now()
    interest_update_from_events(
        session=session, events=[BehaviorEventFactory(session=session, page_path="/shoes", timestamp=now)]
    )
    body = bearer(session).get(f"/api/personalization/{session.public_id}/interests").json()
    assert body["personalized"] is True
    assert body["session"][0]["category"] == "shoes"
    assert body["profile"][0]["category"] == "shoes"
    assert body["segments"] == ["phones"]
    assert ProfileInterest.objects.filter(profile=profile).exists()


def test_interests_without_consent_reveal_nothing(neuron):
    """Without personalization consent the endpoint says so and returns no profile data."""
    session = token_session(neuron=neuron, consent=NO_PERSONALIZATION)
    SessionInterest.objects.create(session=session, weights={"shoes": 1.0}, as_of=timezone.now())
    body = bearer(session).get(f"/api/personalization/{session.public_id}/interests").json()
    assert body["personalized"] is False and body["session"] == [] and body["segments"] == []


# --- adaptive UI preferences ---------------------------------------------------


def test_preferences_are_shared_across_the_profiles_devices(neuron):
    """Set on the phone, read on the laptop: preferences live on the person's profile."""
    profile = GlobalUserProfileFactory(neuron=neuron)
    phone = token_session(neuron=neuron, profile=profile)
    laptop = token_session(neuron=neuron, profile=profile)
    put = bearer(phone).put(
        f"/api/personalization/{phone.public_id}/preferences",
        {"theme": "dark", "language": "pt-BR", "layout": {"compact": True, "sidebar": False}},
        format="json",
    )
    assert put.status_code == 200, put.content
    bearer(laptop).put(
        f"/api/personalization/{laptop.public_id}/preferences",
        {"layout": {"sidebar": True, "compact": None}},
        format="json",
    )
    body = bearer(phone).get(f"/api/personalization/{phone.public_id}/preferences").json()
    assert body == {"theme": "dark", "language": "pt-BR", "reducedMotion": False, "layout": {"sidebar": True}}
    # The session API shows the same preferences.
    session_body = bearer(laptop).get(f"/api/sessions/{laptop.public_id}").json()
    assert session_body["preferences"]["theme"] == "dark"


def test_preferences_of_an_anonymous_session_get_a_profile(neuron):
    """A visitor without a profile gets one to hold their preferences; defaults before that."""
    session = token_session(neuron=neuron)
    url = f"/api/personalization/{session.public_id}/preferences"
    assert bearer(session).get(url).json() == {
        "theme": "system",
        "language": None,
        "reducedMotion": False,
        "layout": {},
    }
    assert bearer(session).put(url, {"reducedMotion": True}, format="json").json()["reducedMotion"] is True
    session.refresh_from_db()
    assert session.profile_id is not None


@pytest.mark.parametrize(
    "payload",
    [
        {"theme": "purple"},
        {"language": "english please"},
        {"reducedMotion": "yes"},
        {"layout": {"compact": "on"}},
        {"layout": {"bad flag!": True}},
        {"layout": ["compact"]},
        {"fontSize": 12},
    ],
)
def test_bad_preferences_are_a_400(neuron, payload):
    """Unknown themes, malformed languages, non-boolean flags and unknown fields are refused."""
    session = token_session(neuron=neuron)
    assert_problem(
        bearer(session).put(f"/api/personalization/{session.public_id}/preferences", payload, format="json"), 400
    )


# --- end to end through ingestion ---------------------------------------------


def test_second_page_view_already_reflects_the_first(site_client, neuron):
    """A page view posted through the events API changes the content chosen for the very next request."""
    created = site_client.post(
        "/api/sessions/create", {"consent": {"analytics": True, "personalization": True}}, format="json"
    ).json()
    client = APIClient(REMOTE_ADDR="81.2.69.142", HTTP_USER_AGENT=IPHONE_UA)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {created['token']}")
    sid = created["sessionId"]
    hero = ContentSlotFactory(neuron=neuron, key="hero")
    ContentVariantFactory(slot=hero, key="generic", is_default=True)
    ContentVariantFactory(slot=hero, key="shoe-sale", targeting={"interests": {"shoes": 0.9}})

    first = client.get(f"/api/personalization/{sid}/content", {"slots": "hero"}).json()
    assert first["slots"]["hero"]["variant"] == "generic"

    page = {"eventType": "page_view", "page": {"url": "https://shop.example.com/shoes/trail-42", "title": "Trail"}}
    assert client.post(f"/api/sessions/{sid}/events", page, format="json").status_code == 200

    second = client.get(f"/api/personalization/{sid}/content", {"slots": "hero"}).json()
    assert second["slots"]["hero"]["variant"] == "shoe-sale"
    interests = client.get(f"/api/personalization/{sid}/interests").json()
    assert interests["session"][0]["category"] == "shoes"


def test_ingestion_without_personalization_consent_builds_no_vector(site_client, neuron):
    """Events stored with analytics consent only feed no interest vector."""
    created = site_client.post("/api/sessions/create", {"consent": {"analytics": True}}, format="json").json()
    client = APIClient(REMOTE_ADDR="81.2.69.142", HTTP_USER_AGENT=IPHONE_UA)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {created['token']}")
    page = {"eventType": "page_view", "page": {"url": "https://shop.example.com/shoes/1"}}
    assert client.post(f"/api/sessions/{created['sessionId']}/events", page, format="json").status_code == 200
    assert not SessionInterest.objects.exists()


def test_withdrawing_personalization_consent_forgets_the_interests(neuron):
    """PUT consent.personalization=false deletes the visit's vector and rebuilds the profile's without it."""
    profile = GlobalUserProfileFactory(neuron=neuron)
    session = token_session(neuron=neuron, profile=profile)
    now = timezone.now()
    event = BehaviorEventFactory(session=session, profile=profile, page_path="/shoes", timestamp=now)
    interest_update_from_events(session=session, events=[event])
    assert ProfileInterest.objects.get(profile=profile).weights

    response = bearer(session).put(
        f"/api/sessions/{session.public_id}", {"consent": {"personalization": False}}, format="json"
    )
    assert response.status_code == 200, response.content
    assert not SessionInterest.objects.filter(session=session).exists()
    assert ProfileInterest.objects.get(profile=profile).weights == {}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["all", "any", "not", "field", "op", "value", "withinDays"]), children, max_size=3
        )
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rule=json_values)
def test_any_rule_document_gets_201_or_a_problem_never_a_500(staff_client, neuron, rule):
    """Whatever JSON is posted as a rule, the answer is 201 or a 400 problem with paths under `rule`."""
    response = staff_client.post(SEGMENTS, {"neuronId": neuron.slug, "name": "Generated", "rule": rule}, format="json")
    if response.status_code == 201:
        Segment.objects.filter(pk=response.json()["id"]).delete()
        return
    body = assert_problem(response, 400)
    assert all(key.startswith("rule") for key in body["errors"])


def test_sessions_segments_report_lists_rule_segments_beside_the_system_ones(staff_client, neuron):
    """GET /api/sessions/segments keeps the built-in segments (system) and adds rule segments with sizes."""
    session = UserSessionFactory(neuron=neuron, device_type="mobile")
    SegmentFactory(neuron=neuron, slug="phones", name="Phones")
    SegmentFactory(slug="elsewhere")  # another site's: not in this site's report
    segments_materialize(neuron=neuron)
    today = session.started_at.date().isoformat()
    body = staff_client.get("/api/sessions/segments", {"from": today, "to": today, "neuronId": neuron.slug}).json()
    by_id = {s["id"]: s for s in body["segments"]}
    rule = by_id[f"rule:{neuron.slug}:phones"]
    assert rule["system"] is False and rule["kind"] == "rule" and rule["sessions"] == 1 and rule["name"] == "Phones"
    assert by_id["device:mobile"]["system"] is True
    assert not any(key.endswith(":elsewhere") for key in by_id)
    assert APIClient().get("/api/sessions/segments").status_code in (401, 403)
