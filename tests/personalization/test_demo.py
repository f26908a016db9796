"""The demo data `make run` shows includes working personalization."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from personalization.content import content_choose
from personalization.models import ContentSlot, ProfileInterest, Segment, SessionInterest
from sessions_app.models import UserSession

pytestmark = pytest.mark.django_db


def test_seed_demo_builds_vectors_segments_and_a_hero_slot():
    """Vectors only for consenting sessions, materialized segments, and a hero that picks a variant."""
    out = StringIO()
    call_command("seed_demo", "--sessions", "200", "--days", "10", stdout=out, stderr=StringIO())
    assert "Personalization:" in out.getvalue()
    assert SessionInterest.objects.exists() and ProfileInterest.objects.exists()
    assert not SessionInterest.objects.filter(session__consent__personalization=False).exists()
    segments = Segment.objects.filter(neuron__slug="demo")
    assert segments.count() == 4 and all(s.materialized_at for s in segments)
    assert ContentSlot.objects.get(neuron__slug="demo", key="hero").variants.count() == 3
    session = UserSession.objects.filter(interest__isnull=False).first()
    [choice] = content_choose(session=session, slot_keys=["hero"])
    assert choice.variant is not None and choice.reason.code in {"targeted", "default"}
