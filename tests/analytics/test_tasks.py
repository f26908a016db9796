"""Analytics beat jobs: installed by setup_periodic_tasks, thin wrappers over idempotent services."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from analytics.models import HourlyRollup, RollupWatermark
from analytics.tasks import advance_rollups, reconcile_rollups
from tests.sessions_app.factories import UserSessionFactory

pytestmark = pytest.mark.django_db


def test_setup_periodic_tasks_installs_the_rollup_jobs_once():
    """Running the command twice leaves one entry per analytics job, with an expiry."""
    call_command("setup_periodic_tasks")
    call_command("setup_periodic_tasks")
    tasks = PeriodicTask.objects.filter(task__startswith="analytics.tasks.")
    assert sorted(t.task for t in tasks) == ["analytics.tasks.advance_rollups", "analytics.tasks.reconcile_rollups"]
    assert all(t.expire_seconds and t.enabled for t in tasks)


def test_rollup_tasks_build_and_reconcile(settings):
    """The tasks roll up closed hours and then find nothing to rebuild."""
    settings.ANALYTICS_ROLLUP_SETTLE = timedelta(hours=1)
    start = datetime(2026, 10, 30, tzinfo=UTC)
    UserSessionFactory(started_at=start + timedelta(hours=1))
    with time_machine.travel(start + timedelta(days=2), tick=False):
        result = advance_rollups.delay().get()
        assert result["hours"] > 0 and result["sequences"] == 0  # every session is already in a closed hour
        assert reconcile_rollups.delay().get() == {"hours": 0, "days": 0}
    assert RollupWatermark.objects.filter(granularity="hour").exists()
    assert HourlyRollup.objects.filter(dimension="total", sessions=1).exists()


def test_rollup_tasks_are_late_acknowledged():
    """Both jobs are idempotent, so a worker lost mid-run lets another redo them."""
    assert advance_rollups.acks_late and reconcile_rollups.acks_late
    assert advance_rollups.time_limit and reconcile_rollups.time_limit
