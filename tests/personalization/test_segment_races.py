"""Segment slugs under concurrency: one writer gets a slug, every other gets the 409 problem.

The services check the slug first, but two writers can both pass that check; the unique
constraint (uniq_segment_slug_per_neuron) then decides, and its violation is the same 409
as the check's, never a 500.
"""

from __future__ import annotations

import pytest
from django.db.models.signals import pre_save
from rest_framework.test import APIClient

from personalization.models import Segment
from privacy.models import AuditEntry
from tests.helpers import assert_problem, in_parallel, needs_postgres
from tests.personalization.factories import SegmentFactory

SEGMENTS = "/api/personalization/segments"
RULE = {"field": "device", "op": "eq", "value": "mobile"}
PARALLEL = 8


@pytest.fixture
def duplicate_before_write():
    """Whoever writes a segment next finds its slug taken between the service's check and its
    INSERT/UPDATE: a concurrent writer, made deterministic with a pre_save hook."""

    def arm(*, neuron, slug: str) -> None:
        def hook(sender, instance, **kwargs):
            pre_save.disconnect(hook, sender=Segment)
            # bulk_create sends no signals: the competing row goes in as another writer's would.
            Segment.objects.bulk_create([Segment(neuron=neuron, slug=slug, name="Competitor", rule=RULE)])

        pre_save.connect(hook, sender=Segment, weak=False)
        armed.append(hook)

    armed: list = []
    yield arm
    for hook in armed:
        pre_save.disconnect(hook, sender=Segment)


@pytest.mark.django_db
def test_create_whose_slug_is_taken_after_the_check_is_a_409(staff_client, neuron, duplicate_before_write):
    duplicate_before_write(neuron=neuron, slug="vip")
    payload = {"neuronId": neuron.slug, "name": "VIP", "slug": "vip", "rule": RULE}
    body = assert_problem(staff_client.post(SEGMENTS, payload, format="json"), 409)
    assert body["errors"] == {"slug": ["Taken."]}
    assert not AuditEntry.objects.filter(action="segment.create").exists()
    # The conflict left the connection usable: the next create works.
    assert staff_client.post(SEGMENTS, {**payload, "slug": "vip-2"}, format="json").status_code == 201


@pytest.mark.django_db
def test_rename_to_a_slug_taken_after_the_check_is_a_409(staff_client, neuron, duplicate_before_write):
    segment = SegmentFactory(neuron=neuron, slug="old")
    duplicate_before_write(neuron=neuron, slug="new")
    body = assert_problem(staff_client.patch(f"{SEGMENTS}/{segment.pk}", {"slug": "new"}, format="json"), 409)
    assert body["errors"] == {"slug": ["Taken."]}
    segment.refresh_from_db()
    assert segment.slug == "old"
    assert not AuditEntry.objects.filter(action="segment.update").exists()


def _in_parallel(staff_user, calls: list) -> list:
    """Run each `call(client)` with a staff client of its own, all at once; their responses, in order."""

    def with_client(call):
        def run():
            client = APIClient()
            client.force_authenticate(staff_user)
            return call(client)

        return run

    return in_parallel([with_client(call) for call in calls])


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_with_one_slug_are_one_201_and_409s(staff_user, neuron):
    payload = {"neuronId": neuron.slug, "name": "VIP", "slug": "vip", "rule": RULE}
    responses = _in_parallel(staff_user, [lambda client: client.post(SEGMENTS, payload, format="json")] * PARALLEL)
    assert sorted(r.status_code for r in responses) == [201] + [409] * (PARALLEL - 1)
    for response in responses:
        if response.status_code == 409:
            assert assert_problem(response, 409)["errors"] == {"slug": ["Taken."]}
    assert Segment.objects.filter(neuron=neuron, slug="vip").count() == 1
    assert AuditEntry.objects.filter(action="segment.create").count() == 1


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_renames_to_one_slug_are_one_200_and_409s(staff_user, neuron):
    segments = [SegmentFactory(neuron=neuron, slug=f"s-{i}") for i in range(PARALLEL)]
    responses = _in_parallel(
        staff_user,
        [
            (lambda pk: lambda client: client.patch(f"{SEGMENTS}/{pk}", {"slug": "vip"}, format="json"))(s.pk)
            for s in segments
        ],
    )
    assert sorted(r.status_code for r in responses) == [200] + [409] * (PARALLEL - 1)
    assert Segment.objects.filter(neuron=neuron, slug="vip").count() == 1
    assert Segment.objects.filter(neuron=neuron).count() == PARALLEL
