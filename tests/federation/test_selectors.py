"""The per-process cache of sites by publishable key: fewer queries, and still refuses a
deactivated key at once in the saving process and within NEURON_CACHE_SECONDS elsewhere."""

from __future__ import annotations

import pytest

from federation import selectors
from federation.models import Neuron
from federation.selectors import neuron_get_by_publishable_key
from tests.federation.factories import NeuronFactory

pytestmark = pytest.mark.django_db

CREATE = "/api/sessions/create"


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(selectors, "clock", lambda: now[0])
    return now


def test_a_known_key_is_read_from_the_database_once(django_assert_num_queries):
    """Repeated lookups of one key cost one query in all."""
    neuron = NeuronFactory()
    with django_assert_num_queries(1):
        for _ in range(5):
            assert neuron_get_by_publishable_key(key=neuron.publishable_key) == neuron


def test_an_unknown_key_is_remembered_too(django_assert_num_queries):
    """A flood of one bad key is not a flood of queries."""
    with django_assert_num_queries(1):
        for _ in range(3):
            assert neuron_get_by_publishable_key(key="pk_unknown") is None


def test_deactivating_a_site_is_seen_at_once_by_the_saving_process(site_client, neuron):
    """The save signal empties the cache: the next session creation is refused."""
    assert site_client.post(CREATE, {}, format="json").status_code == 201
    neuron.is_active = False
    neuron.save()
    response = site_client.post(CREATE, {}, format="json")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"


def test_a_change_made_elsewhere_is_seen_once_the_entry_expires(site_client, neuron, clock, settings):
    """Another process deactivated the site (no signal here): refused after NEURON_CACHE_SECONDS."""
    settings.NEURON_CACHE_SECONDS = 5.0
    assert site_client.post(CREATE, {}, format="json").status_code == 201
    Neuron.objects.filter(pk=neuron.pk).update(is_active=False)  # bypasses signals, like another process
    clock[0] += 4.9
    assert site_client.post(CREATE, {}, format="json").status_code == 201  # still cached
    clock[0] += 0.2
    assert site_client.post(CREATE, {}, format="json").status_code == 401


def test_a_site_created_after_its_key_was_refused_is_found_once_the_entry_expires(clock):
    """A key looked up before it existed is not refused forever."""
    assert neuron_get_by_publishable_key(key="pk_later0000000000000000") is None
    neuron = NeuronFactory(publishable_key="pk_later0000000000000000")  # the save clears this process's cache
    assert neuron_get_by_publishable_key(key="pk_later0000000000000000") == neuron


def test_deleting_a_site_clears_the_cache(neuron):
    key = neuron.publishable_key
    assert neuron_get_by_publishable_key(key=key) == neuron
    neuron.delete()
    assert neuron_get_by_publishable_key(key=key) is None


def test_cache_can_be_disabled(neuron, settings, django_assert_num_queries):
    settings.NEURON_CACHE_SECONDS = 0
    with django_assert_num_queries(2):
        neuron_get_by_publishable_key(key=neuron.publishable_key)
        neuron_get_by_publishable_key(key=neuron.publishable_key)


def test_write_key_of_a_deactivated_site_is_refused_by_v1_within_the_cache_lifetime(client, neuron, clock):
    """/v1 authenticates by the same key and the same cache."""
    body = {"anonymousId": "a", "event": "Viewed", "writeKey": neuron.publishable_key}
    assert client.post("/v1/track", body, content_type="application/json").status_code == 200
    Neuron.objects.filter(pk=neuron.pk).update(is_active=False)
    clock[0] += 60
    assert client.post("/v1/track", body, content_type="application/json").status_code == 401
