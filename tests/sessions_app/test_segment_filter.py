"""The `segment` filter of SessionFilter: built-in segments and personalization's stored segment lists,
on the admin API (query and search document) and in the dashboard's sessions explorer."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from personalization.services import segments_materialize
from tests.helpers import assert_problem
from tests.personalization.factories import SegmentFactory
from tests.sessions_app.factories import UserSessionFactory
from tests.sessions_app.test_admin_apis import LIST, SEARCH

pytestmark = pytest.mark.django_db


def listed(client, segment: str) -> set[str]:
    response = client.get(LIST, {"segment": segment})
    assert response.status_code == 200, response.content
    return {r["sessionId"] for r in response.json()["results"]}


def ids(*sessions) -> set[str]:
    return {str(s.public_id) for s in sessions}


def test_new_and_returning_visitors(staff_client, neuron):
    """A session is new when its device (anonymous id) had no earlier session on that site."""
    now = timezone.now()
    first = UserSessionFactory(neuron=neuron, anonymous_id="device-a", started_at=now - timedelta(days=2))
    again = UserSessionFactory(neuron=neuron, anonymous_id="device-a", started_at=now - timedelta(hours=1))
    other_site = UserSessionFactory(anonymous_id="device-a", started_at=now)  # another site: new there
    single = UserSessionFactory(neuron=neuron, anonymous_id="device-b")
    assert listed(staff_client, "visitors:new") == ids(first, other_site, single)
    assert listed(staff_client, "visitors:returning") == ids(again)


def test_device_and_consent_segments(staff_client):
    phone = UserSessionFactory(device_type="mobile", consent={"analytics": True, "marketing": True})
    desktop = UserSessionFactory(device_type="desktop", consent={"analytics": True, "marketing": False})
    assert listed(staff_client, "device:mobile") == ids(phone)
    assert listed(staff_client, "consent:marketing") == ids(phone)
    assert listed(staff_client, "consent:analytics") == ids(phone, desktop)


def test_rule_segment_uses_its_materialized_list(staff_client, neuron):
    """A personalization segment selects the sessions of its last materialized list, not a live evaluation."""
    segment = SegmentFactory(neuron=neuron, slug="mobile-fans", rule={"field": "device", "op": "eq", "value": "mobile"})
    member = UserSessionFactory(neuron=neuron, device_type="mobile")
    UserSessionFactory(neuron=neuron, device_type="desktop")
    assert listed(staff_client, f"rule:{neuron.slug}:{segment.slug}") == set()  # not materialized yet
    segments_materialize(neuron=neuron)
    later = UserSessionFactory(neuron=neuron, device_type="mobile")  # matches, but after the list was made
    assert listed(staff_client, f"rule:{neuron.slug}:{segment.slug}") == ids(member)
    segments_materialize(neuron=neuron)
    assert listed(staff_client, f"rule:{neuron.slug}:{segment.slug}") == ids(member, later)


@pytest.mark.parametrize("value", ["everyone", "device:fridge", "consent:nothing", "rule:shop:missing", "visitors:"])
def test_unknown_segment_is_a_400_naming_the_filter(staff_client, value):
    UserSessionFactory()
    problem = assert_problem(staff_client.get(LIST, {"segment": value}), 400)
    assert "segment" in problem["errors"]


def test_inactive_rule_segment_is_not_offered(staff_client, neuron):
    segment = SegmentFactory(neuron=neuron, is_active=False)
    assert_problem(staff_client.get(LIST, {"segment": f"rule:{neuron.slug}:{segment.slug}"}), 400)


def test_search_document_takes_the_segment_filter(staff_client):
    phone = UserSessionFactory(device_type="mobile", country="GB")
    UserSessionFactory(device_type="mobile", country="FR")
    response = staff_client.post(SEARCH, {"filter": {"segment": "device:mobile", "country": "GB"}}, format="json")
    assert [r["sessionId"] for r in response.json()["results"]] == [str(phone.public_id)]


def test_explorer_offers_and_applies_the_segment_filter(staff_user, neuron):
    """The explorer's form lists built-in and rule segments, and filters by the one chosen."""
    SegmentFactory(neuron=neuron, slug="big-spenders", name="Big spenders")
    phone = UserSessionFactory(neuron=neuron, device_type="mobile")
    UserSessionFactory(neuron=neuron, device_type="desktop")
    client = Client()
    client.force_login(staff_user)
    page = client.get("/dashboard/sessions/").content.decode()
    select = re.search(r'<select name="segment".*?</select>', page, re.S).group(0)
    for value in ("visitors:new", "visitors:returning", "device:mobile", "consent:analytics"):
        assert f'value="{value}"' in select
    assert f'value="rule:{neuron.slug}:big-spenders"' in select and "Big spenders" in select
    html = client.get("/dashboard/sessions/", {"segment": "device:mobile"}).content.decode()
    assert re.findall(r'href="/dashboard/sessions/([0-9a-f-]{36})/"', html) == [str(phone.public_id)]
