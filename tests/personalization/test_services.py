"""Interest vectors, profile engagement and segments, through the services."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from config.api.errors import Conflict, ValidationFailed
from personalization.models import CategoryRule, ProfileInterest, Segment, SegmentMembership, SessionInterest
from personalization.rules import rule_validate
from personalization.selectors import interests_for_session, segments_for_session
from personalization.services import (
    interest_forget,
    interest_profile_recompute,
    interest_session_recompute,
    interest_update_from_events,
    profile_engagement,
    segment_create,
    segment_update,
    segments_materialize,
)
from sessions_app.identity import profile_identify, profile_merge, profile_split
from sessions_app.models import GlobalUserProfile
from tests.federation.factories import NeuronFactory
from tests.personalization.factories import SegmentFactory
from tests.sessions_app.factories import BehaviorEventFactory, GlobalUserProfileFactory, UserSessionFactory

pytestmark = pytest.mark.django_db

NO_PERSONALIZATION = {"analytics": True, "personalization": False}


def view(session, path, *, at=None, **kwargs):
    at = at or timezone.now()
    return BehaviorEventFactory(
        session=session, profile=session.profile, page_path=path, timestamp=at, received_at=at, **kwargs
    )


def test_events_update_the_session_and_profile_vectors():
    """Stored events raise the weights of their categories on the session and on its profile."""
    profile = GlobalUserProfileFactory()
    session = UserSessionFactory(neuron=profile.neuron, profile=profile)
    events = [view(session, "/shoes/a"), view(session, "/shoes/b"), view(session, "/hats/c")]
    assert interest_update_from_events(session=session, events=events) is True
    weights = SessionInterest.objects.get(session=session).weights
    assert weights["shoes"] == pytest.approx(2.0, rel=1e-3) and weights["hats"] == pytest.approx(1.0, rel=1e-3)
    profile_row = ProfileInterest.objects.get(profile=profile)
    assert profile_row.weights == pytest.approx(weights)
    assert profile_row.event_count == 3


def test_no_vector_without_personalization_consent():
    """Without personalization consent no interest profile is built."""
    session = UserSessionFactory(consent=NO_PERSONALIZATION)
    assert interest_update_from_events(session=session, events=[view(session, "/shoes")]) is False
    assert not SessionInterest.objects.exists()


def test_second_batch_already_reflects_the_first():
    """Each update reads what the previous one wrote, decayed to the new event."""
    session = UserSessionFactory()
    now = timezone.now()
    interest_update_from_events(session=session, events=[view(session, "/shoes", at=now - timedelta(days=7))])
    interest_update_from_events(session=session, events=[view(session, "/shoes", at=now)])
    assert SessionInterest.objects.get(session=session).weights["shoes"] == pytest.approx(1.5, rel=1e-3)


def test_incremental_vector_equals_recomputation_from_events():
    """Folding batches one by one gives the same vector as rebuilding from all stored events."""
    session = UserSessionFactory()
    now = timezone.now()
    batches = [
        [view(session, "/shoes", at=now - timedelta(days=9)), view(session, "/bags", at=now - timedelta(days=2))],
        [view(session, "/shoes", at=now - timedelta(days=4), event_type="conversion")],
        [view(session, "/hats", at=now)],
    ]
    for batch in batches:
        interest_update_from_events(session=session, events=batch)
    incremental = SessionInterest.objects.get(session=session)
    rebuilt = interest_session_recompute(session=session)
    assert rebuilt.weights == pytest.approx(incremental.weights)
    assert rebuilt.as_of == incremental.as_of


def test_category_rules_of_the_neuron_apply():
    """A site's path-prefix mapping names the category of its pages."""
    session = UserSessionFactory()
    CategoryRule.objects.create(neuron=session.neuron, path_prefix="/p/", category="products")
    interest_update_from_events(session=session, events=[view(session, "/p/123")])
    assert SessionInterest.objects.get(session=session).weights == {"products": pytest.approx(1.0)}


def test_profile_vector_follows_a_merge():
    """Identity's merge moves the events and the survivor's vector then covers both profiles."""
    neuron = NeuronFactory()
    keep, gone = GlobalUserProfileFactory(neuron=neuron), GlobalUserProfileFactory(neuron=neuron)
    phone = UserSessionFactory(neuron=neuron, profile=keep)
    laptop = UserSessionFactory(neuron=neuron, profile=gone)
    interest_update_from_events(session=phone, events=[view(phone, "/shoes")])
    interest_update_from_events(session=laptop, events=[view(laptop, "/hats"), view(laptop, "/hats")])

    profile_merge(source=gone, target=keep, method="alias")

    weights = ProfileInterest.objects.get(profile=keep).weights
    assert weights["shoes"] == pytest.approx(1.0, rel=1e-3)
    assert weights["hats"] == pytest.approx(2.0, rel=1e-3)
    assert not ProfileInterest.objects.filter(profile=gone).exists()


def test_profile_vector_follows_a_split():
    """Identity's split (undoing the merge) gives each profile back its own interests."""
    neuron = NeuronFactory()
    mine, theirs = GlobalUserProfileFactory(neuron=neuron), GlobalUserProfileFactory(neuron=neuron)
    s1 = UserSessionFactory(neuron=neuron, profile=mine)
    s2 = UserSessionFactory(neuron=neuron, profile=theirs)
    interest_update_from_events(session=s1, events=[view(s1, "/shoes")])
    interest_update_from_events(session=s2, events=[view(s2, "/hats")])
    profile_merge(source=theirs, target=mine, method="alias")
    assert set(ProfileInterest.objects.get(profile=mine).weights) == {"shoes", "hats"}

    profile_split(profile=mine, actor="operator")

    assert set(ProfileInterest.objects.get(profile=mine).weights) == {"shoes"}
    assert set(ProfileInterest.objects.get(profile=theirs).weights) == {"hats"}


def test_identify_attaches_an_anonymous_sessions_interests_to_the_user():
    """A session identified into a new user's profile brings its events' interests along."""
    session = UserSessionFactory()
    interest_update_from_events(session=session, events=[view(session, "/shoes")])
    profile_identify(session=session, user_id="user-42")
    profile = GlobalUserProfile.objects.get(sessions=session)
    assert ProfileInterest.objects.get(profile=profile).weights == {"shoes": pytest.approx(1.0, rel=1e-3)}


def test_recompute_ignores_sessions_without_personalization_consent():
    """A session that refused personalization does not feed its profile's vector on rebuild."""
    profile = GlobalUserProfileFactory()
    yes = UserSessionFactory(neuron=profile.neuron, profile=profile)
    no = UserSessionFactory(neuron=profile.neuron, profile=profile, consent=NO_PERSONALIZATION)
    view(yes, "/shoes")
    view(no, "/hats")
    assert set(interest_profile_recompute(profile=profile).weights) == {"shoes"}


def test_forget_drops_the_session_vector_and_rebuilds_the_profile():
    """Withdrawing personalization consent removes the session's contribution everywhere."""
    profile = GlobalUserProfileFactory()
    session = UserSessionFactory(neuron=profile.neuron, profile=profile)
    interest_update_from_events(session=session, events=[view(session, "/shoes")])
    session.consent = NO_PERSONALIZATION
    session.save(update_fields=["consent"])
    interest_forget(session=session)
    assert not SessionInterest.objects.filter(session=session).exists()
    assert ProfileInterest.objects.get(profile=profile).weights == {}


def test_profile_engagement_is_a_recency_weighted_mean():
    """A recent engaged session counts more than an old one; the result stays in 0..100."""
    profile = GlobalUserProfileFactory()
    now = timezone.now()
    UserSessionFactory(neuron=profile.neuron, profile=profile, engagement_score=80.0, last_activity_at=now)
    UserSessionFactory(
        neuron=profile.neuron, profile=profile, engagement_score=20.0, last_activity_at=now - timedelta(days=7)
    )
    score, sessions = profile_engagement(profile=profile, now=now)
    assert sessions == 2
    assert score == pytest.approx((80 * 1 + 20 * 0.5) / 1.5, abs=0.01)
    assert profile_engagement(profile=GlobalUserProfileFactory(), now=now) == (0.0, 0)


def test_interests_read_back_decayed_to_now():
    """Reading a vector a half-life later gives half the weight."""
    session = UserSessionFactory()
    then = timezone.now() - timedelta(days=7)
    interest_update_from_events(session=session, events=[view(session, "/shoes", at=then)])
    assert interests_for_session(session=session).session["shoes"] == pytest.approx(0.5, rel=1e-3)


# --- segments ---------------------------------------------------------------


def test_segment_create_validates_the_rule():
    """An invalid rule is refused with the path of the bad node."""
    neuron = NeuronFactory()
    with pytest.raises(ValidationFailed) as exc:
        segment_create(neuron=neuron, name="Bad", rule={"all": [{"field": "device", "op": "gt", "value": 1}]})
    assert "rule.all[0].op" in exc.value.errors


def test_segment_slugs_are_unique_per_site():
    """A second segment with the same slug on a site is a conflict."""
    neuron = NeuronFactory()
    rule = {"field": "identified", "op": "eq", "value": True}
    segment_create(neuron=neuron, name="Known", rule=rule)
    with pytest.raises(Conflict):
        segment_create(neuron=neuron, name="Known", rule=rule)
    assert segment_create(neuron=NeuronFactory(), name="Known", rule=rule).slug == "known"


def test_changing_the_rule_empties_the_stale_list():
    """A materialized list no longer describes a changed rule: it is cleared until the next run."""
    session = UserSessionFactory(device_type="mobile")
    segment = SegmentFactory(neuron=session.neuron)
    segments_materialize(neuron=session.neuron)
    assert SegmentMembership.objects.filter(segment=segment).count() == 1
    segment_update(segment=segment, changes={"rule": {"field": "device", "op": "eq", "value": "desktop"}})
    segment.refresh_from_db()
    assert segment.size == 0 and segment.materialized_at is None
    assert not SegmentMembership.objects.filter(segment=segment).exists()


def test_materialized_lists_equal_live_evaluation():
    """For every session in the window, membership in the stored list equals live evaluation."""
    neuron = NeuronFactory()
    now = timezone.now()
    sessions = []
    for i in range(12):
        profile = GlobalUserProfileFactory(neuron=neuron, traits={"plan": "pro" if i % 3 == 0 else "free"})
        session = UserSessionFactory(
            neuron=neuron,
            profile=profile if i % 2 else None,
            device_type="mobile" if i % 4 else "desktop",
            country="DE" if i % 5 else "GB",
        )
        for _ in range(i % 4):
            view(session, "/shoes" if i % 2 else "/hats", at=now - timedelta(hours=i))
        interest_update_from_events(session=session, events=list(session.events.all()))
        sessions.append(session)
    rules = [
        {"field": "device", "op": "eq", "value": "mobile"},
        {"any": [{"field": "trait.plan", "op": "eq", "value": "pro"}, {"field": "country", "op": "eq", "value": "GB"}]},
        {
            "all": [
                {"field": "events", "op": "gte", "value": 2, "withinDays": 1},
                {"not": {"field": "identified", "op": "eq", "value": True}},
            ]
        },
        {"field": "interest.shoes", "op": "gte", "value": 1.5},
    ]
    segments = [SegmentFactory(neuron=neuron, rule=rule) for rule in rules]
    segments_materialize(neuron=neuron, now=now)
    for segment in segments:
        stored = set(SegmentMembership.objects.filter(segment=segment).values_list("session_id", flat=True))
        live = {s.pk for s in sessions if segment in segments_for_session(session=s, now=now)}
        assert stored == live, segment.rule
        segment.refresh_from_db()
        assert segment.size == len(stored)
    assert 0 < sum(Segment.objects.values_list("size", flat=True)) < len(sessions) * len(segments)


def random_condition(rng: random.Random) -> dict:
    choices = [
        lambda: {"field": "device", "op": rng.choice(["eq", "ne"]), "value": rng.choice(["mobile", "desktop"])},
        lambda: {"field": "country", "op": rng.choice(["in", "notIn"]), "value": rng.sample(["GB", "DE", "FR"], 2)},
        lambda: {"field": "trait.plan", "op": rng.choice(["eq", "ne", "exists"]), "value": rng.choice(["pro", True])},
        lambda: {"field": "interest.shoes", "op": rng.choice(["gt", "lte"]), "value": rng.choice([0, 0.5, 1.5])},
        lambda: {"field": "sessionInterest.hats", "op": "gte", "value": rng.choice([0.5, 1])},
        lambda: {"field": "events", "op": rng.choice(["gte", "lt", "eq"]), "value": rng.randint(0, 3), "withinDays": 1},
        lambda: {"field": "identified", "op": "eq", "value": rng.random() < 0.5},
        lambda: {"field": "engagement", "op": rng.choice(["gt", "lt"]), "value": rng.choice([0, 10, 50])},
    ]
    node = rng.choice(choices)()
    if node["op"] == "exists":
        node["value"] = rng.random() < 0.5
    elif node["field"] == "trait.plan" and not isinstance(node["value"], str):
        node["value"] = "pro"
    return node


def random_rule(rng: random.Random, depth: int = 0) -> dict:
    if depth >= 3 or rng.random() < 0.35:
        return random_condition(rng)
    kind = rng.choice(["all", "any", "not"])
    if kind == "not":
        return {"not": random_rule(rng, depth + 1)}
    return {kind: [random_rule(rng, depth + 1) for _ in range(rng.randint(1, 3))]}


def test_random_rules_materialize_exactly_what_live_evaluation_says():
    """Forty random rule trees over a varied population: each stored list equals live evaluation."""
    neuron = NeuronFactory()
    now = timezone.now()
    rng = random.Random(11)
    sessions = []
    for i in range(16):
        traits = {"plan": "pro"} if i % 3 == 0 else ({} if i % 3 == 1 else {"plan": "free"})
        profile = GlobalUserProfileFactory(neuron=neuron, traits=traits, user_id_hash=f"h{i}" if i % 4 == 0 else None)
        session = UserSessionFactory(
            neuron=neuron,
            profile=profile if i % 2 else None,
            device_type=rng.choice(["mobile", "desktop"]),
            country=rng.choice(["GB", "DE", "FR"]),
            engagement_score=rng.choice([0.0, 20.0, 60.0]),
        )
        events = [
            view(session, rng.choice(["/shoes", "/hats"]), at=now - timedelta(hours=rng.randint(0, 40)))
            for _ in range(i % 5)
        ]
        interest_update_from_events(session=session, events=events)
        sessions.append(session)
    rules = [random_rule(rng) for _ in range(40)]
    for rule in rules:
        rule_validate(rule)
    segments = [SegmentFactory(neuron=neuron, rule=rule) for rule in rules]
    segments_materialize(neuron=neuron, now=now)
    sizes = []
    for segment in segments:
        stored = set(SegmentMembership.objects.filter(segment=segment).values_list("session_id", flat=True))
        live = {s.pk for s in sessions if segment in segments_for_session(session=s, now=now)}
        assert stored == live, segment.rule
        sizes.append(len(stored))
    assert len(set(sizes)) > 3  # the rules really split the population in different ways


def test_rule_segment_summary_lists_active_segments_with_sizes():
    """The report summary names each active rule segment of the asked sites with its stored size."""
    from personalization.selectors import rule_segments_summary

    session = UserSessionFactory(device_type="mobile")
    segment = SegmentFactory(neuron=session.neuron, slug="phones", name="Phones")
    SegmentFactory(neuron=session.neuron, is_active=False)
    SegmentFactory()  # another site's
    segments_materialize(neuron=session.neuron)
    [row] = rule_segments_summary(neuron_ids=[session.neuron_id])
    assert row["id"] == f"rule:{session.neuron.slug}:phones" and row["kind"] == "rule"
    assert row["name"] == "Phones" and row["sessions"] == 1 and row["materializedAt"]
    assert len(rule_segments_summary()) == 2
    assert segment.pk
