"""`seed_demo`: the data `make run` shows."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db.models import Count, F, Q

from federation.models import Neuron
from sessions_app.models import AnonymousTrafficCount, BehaviorEvent, UserSession
from tests.helpers import project_permissions

pytestmark = pytest.mark.django_db


def test_seed_demo_creates_site_staff_user_and_consistent_data():
    out = StringIO()
    call_command("seed_demo", "--sessions", "300", "--days", "14", stdout=out, stderr=StringIO())
    text = out.getvalue()
    neuron = Neuron.objects.get(slug="demo")
    assert neuron.publishable_key in text and "admin / admin" in text
    admin = get_user_model().objects.get(username="admin")
    # A superuser: the dashboard, the staff API and the admin each need their model permissions.
    assert admin.is_staff and admin.is_superuser and admin.has_perms(project_permissions())
    assert UserSession.objects.filter(neuron=neuron).count() == 300
    # Visitors without analytics consent have no event rows, only anonymous counts.
    assert not BehaviorEvent.objects.filter(session__consent__analytics=False).exists()
    assert AnonymousTrafficCount.objects.filter(neuron=neuron).exists()
    # Session counters equal the events written.
    mismatched = (
        UserSession.objects.filter(neuron=neuron)
        .annotate(n=Count("events"), pv=Count("events", filter=Q(events__event_type="page_view")))
        .exclude(event_count=F("n"), page_view_count=F("pv"))
    )
    assert not mismatched.exists()
    assert BehaviorEvent.objects.filter(event_type="conversion", event_name="purchase").exists()
    assert set(UserSession.objects.values_list("device_type", flat=True)) >= {"desktop", "mobile", "tablet"}
    assert UserSession.objects.values("country").distinct().count() >= 5


def test_seed_demo_is_idempotent_and_resettable():
    call_command("seed_demo", "--sessions", "50", stdout=StringIO(), stderr=StringIO())
    out = StringIO()
    call_command("seed_demo", "--sessions", "50", stdout=out, stderr=StringIO())
    assert "already present" in out.getvalue()
    assert UserSession.objects.count() == 50
    call_command("seed_demo", "--sessions", "20", "--reset", stdout=StringIO(), stderr=StringIO())
    assert UserSession.objects.count() == 20
    assert Neuron.objects.filter(slug="demo").count() == 1


def test_seed_demo_refuses_bad_arguments():
    with pytest.raises(CommandError):
        call_command("seed_demo", "--sessions", "0", stdout=StringIO())
