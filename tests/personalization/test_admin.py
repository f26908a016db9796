"""Segments edited in the admin go through personalization's services: validated and audited."""

from __future__ import annotations

import orjson
import pytest

from personalization.models import Segment, SegmentMembership
from privacy.models import AuditEntry
from tests.personalization.factories import SegmentFactory
from tests.sessions_app.factories import UserSessionFactory

pytestmark = pytest.mark.django_db

SEGMENTS = "/admin/personalization/segment/"
MOBILE = {"field": "device", "op": "eq", "value": "mobile"}
DESKTOP = {"field": "device", "op": "eq", "value": "desktop"}


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-123"))
    return client


def form(segment_neuron, **fields):
    data = {"neuron": segment_neuron.pk, "slug": "mobile", "name": "Mobile", "description": "", "is_active": "on"}
    data.update(fields)
    data["rule"] = orjson.dumps(data.get("rule", MOBILE)).decode()
    return data


def test_creating_a_segment_in_the_admin_is_audited(admin_client, neuron):
    response = admin_client.post(SEGMENTS + "add/", form(neuron))
    assert response.status_code == 302, response.content
    segment = Segment.objects.get()
    assert segment.rule == MOBILE and segment.neuron == neuron
    entry = AuditEntry.objects.get(action="segment.create")
    assert entry.subject == f"segment:{segment.pk}" and entry.actor.endswith(":root")
    assert entry.details == {"rule": MOBILE}


def test_an_invalid_rule_is_a_form_error_and_nothing_is_saved(admin_client, neuron):
    response = admin_client.post(SEGMENTS + "add/", form(neuron, rule={"field": "device", "op": "explode"}))
    assert response.status_code == 200
    assert "rule" in response.context["adminform"].form.errors
    assert not Segment.objects.exists() and not AuditEntry.objects.exists()


def test_changing_the_rule_empties_the_stale_list_and_is_audited(admin_client, neuron):
    """The update service runs: the old member list no longer describes the rule."""
    segment = SegmentFactory(neuron=neuron, slug="mobile", name="Mobile", rule=MOBILE)
    SegmentMembership.objects.create(
        segment=segment, session=UserSessionFactory(neuron=neuron), computed_at=segment.created_at
    )
    response = admin_client.post(f"{SEGMENTS}{segment.pk}/change/", form(neuron, rule=DESKTOP, name="Desktop"))
    assert response.status_code == 302, response.content
    segment.refresh_from_db()
    assert segment.rule == DESKTOP and segment.name == "Desktop" and segment.materialized_at is None
    assert not SegmentMembership.objects.exists()
    details = AuditEntry.objects.get(action="segment.update").details
    assert details["changes"] == {"rule": DESKTOP, "name": "Desktop"}


def test_deleting_a_segment_in_the_admin_is_audited(admin_client, neuron):
    segment = SegmentFactory(neuron=neuron)
    response = admin_client.post(f"{SEGMENTS}{segment.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Segment.objects.exists()
    assert AuditEntry.objects.get(action="segment.delete").details == {"slug": segment.slug}


def test_deleting_segments_in_bulk_audits_each(admin_client, neuron):
    segments = SegmentFactory.create_batch(2, neuron=neuron)
    admin_client.post(
        SEGMENTS, {"action": "delete_selected", "_selected_action": [s.pk for s in segments], "post": "yes"}
    )
    assert not Segment.objects.exists()
    assert AuditEntry.objects.filter(action="segment.delete").count() == 2
