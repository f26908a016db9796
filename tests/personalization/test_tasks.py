"""Personalization jobs: fan-out per site, schedule installation, and the admin that drives them."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from personalization.models import ContentSlot, ItemNeighbour, Segment, SegmentMembership
from personalization.tasks import compute_all_recommendations, materialize_all_segments, recompute_profile_interest
from tests.personalization.factories import ContentSlotFactory, SegmentFactory
from tests.sessions_app.factories import BehaviorEventFactory, GlobalUserProfileFactory, UserSessionFactory

pytestmark = pytest.mark.django_db


def test_materialize_all_segments_covers_every_site():
    """The periodic job materializes each active site's segments."""
    a, b = UserSessionFactory(device_type="mobile"), UserSessionFactory(device_type="desktop")
    seg_a, seg_b = SegmentFactory(neuron=a.neuron), SegmentFactory(neuron=b.neuron)
    assert materialize_all_segments.delay().get() == 2
    assert list(SegmentMembership.objects.filter(segment=seg_a).values_list("session_id", flat=True)) == [a.pk]
    assert not SegmentMembership.objects.filter(segment=seg_b).exists()
    assert Segment.objects.get(pk=seg_a.pk).materialized_at is not None


def test_recommendation_job_learns_from_events():
    """The periodic job stores item neighbours learned from events."""
    for _ in range(2):
        s = UserSessionFactory()
        for item in ("a", "b"):
            BehaviorEventFactory(session=s, event_type="custom", properties={"itemId": item})
    compute_all_recommendations.delay()
    assert ItemNeighbour.objects.filter(item="a", neighbour="b").exists()


def test_profile_recompute_task_takes_an_id():
    """Identity can queue a recompute by profile id; an unknown id is a no-op."""
    profile = GlobalUserProfileFactory()
    session = UserSessionFactory(neuron=profile.neuron, profile=profile)
    BehaviorEventFactory(session=session, page_path="/shoes")
    assert recompute_profile_interest.delay(profile.pk).get() is True
    assert recompute_profile_interest.delay(10**9).get() is False


def test_setup_periodic_tasks_installs_the_personalization_jobs():
    """`setup_periodic_tasks` installs the three jobs, each with an expiry."""
    call_command("setup_periodic_tasks", stdout=io.StringIO())
    names = set(PeriodicTask.objects.filter(name__startswith="personalization:").values_list("name", flat=True))
    assert names == {
        "personalization: materialize segments",
        "personalization: compute archetypes",
        "personalization: learn item co-occurrence",
    }
    assert all(t.expire_seconds for t in PeriodicTask.objects.filter(name__startswith="personalization:"))


# --- admin ----------------------------------------------------------------------


@pytest.fixture
def admin_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-12345")
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "model",
    ["segment", "archetype", "contentslot", "categoryrule", "profileinterest", "sessioninterest", "itemneighbour"],
)
def test_admin_pages_render(admin_client, model):
    """Every personalization admin list renders for a superuser."""
    assert admin_client.get(f"/admin/personalization/{model}/").status_code == 200


def test_admin_refuses_an_invalid_rule_with_its_path(admin_client):
    """The segment form validates the rule and shows the bad node's path."""
    segment = SegmentFactory()
    response = admin_client.post(
        f"/admin/personalization/segment/{segment.pk}/change/",
        {
            "neuron": segment.neuron_id,
            "slug": segment.slug,
            "name": segment.name,
            "description": "",
            "rule": '{"all": [{"field": "device", "op": "eq", "value": "fridge"}]}',
            "is_active": "on",
        },
    )
    assert response.status_code == 200
    assert "rule.all[0].value" in response.content.decode()


def test_admin_materialize_action_queues_the_job(admin_client):
    """The admin action materializes the selected segments' sites."""
    session = UserSessionFactory(device_type="mobile")
    segment = SegmentFactory(neuron=session.neuron)
    admin_client.post(
        "/admin/personalization/segment/", {"action": "materialize", "_selected_action": [segment.pk]}, follow=True
    )
    assert SegmentMembership.objects.filter(segment=segment, session=session).exists()


def test_admin_refuses_invalid_variant_targeting(admin_client):
    """A variant whose targeting names an unknown key is refused by the slot form."""
    slot = ContentSlotFactory()
    response = admin_client.post(
        f"/admin/personalization/contentslot/{slot.pk}/change/",
        {
            "neuron": slot.neuron_id,
            "key": slot.key,
            "description": "",
            "variants-TOTAL_FORMS": "1",
            "variants-INITIAL_FORMS": "0",
            "variants-MIN_NUM_FORMS": "0",
            "variants-MAX_NUM_FORMS": "1000",
            "variants-0-key": "v1",
            "variants-0-content": "{}",
            "variants-0-targeting": '{"audience": ["x"]}',
            "variants-0-priority": "0",
            "variants-0-is_active": "on",
        },
    )
    assert response.status_code == 200
    assert "targeting.audience" in response.content.decode()
    assert not ContentSlot.objects.get(pk=slot.pk).variants.exists()


@pytest.mark.django_db(transaction=True)
def test_segment_materialization_fans_out_through_a_real_worker():
    """The periodic job and its per-site jobs travel through the broker to a worker started here."""
    import time
    from datetime import timedelta

    from celery.contrib.testing.worker import start_worker
    from django.utils import timezone

    from config.celery import app

    session = UserSessionFactory(device_type="mobile")
    segment = SegmentFactory(neuron=session.neuron)
    app.conf.task_always_eager = False
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            materialize_all_segments.apply_async()
            # No result backend: wait for the effect in the database.
            deadline = timezone.now() + timedelta(seconds=30)
            while timezone.now() < deadline and not Segment.objects.get(pk=segment.pk).materialized_at:
                time.sleep(0.1)
    finally:
        app.conf.task_always_eager = True
    assert Segment.objects.get(pk=segment.pk).size == 1
    assert SegmentMembership.objects.filter(segment=segment, session=session).exists()
