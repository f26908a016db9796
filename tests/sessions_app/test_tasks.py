"""The session-expiry job: as a task, through a real worker, and its beat schedule."""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from sessions_app.models import UserSession
from sessions_app.services import session_expiry
from sessions_app.tasks import expire_idle_sessions
from tests.sessions_app.factories import UserSessionFactory


def _stale_session() -> UserSession:
    started = timezone.now() - timedelta(hours=2)
    last = timezone.now() - timedelta(minutes=40)
    return UserSessionFactory(
        started_at=started, last_activity_at=last, expires_at=session_expiry(started_at=started, last_activity_at=last)
    )


@pytest.mark.django_db
def test_expire_task_ends_stale_sessions():
    stale = _stale_session()
    assert expire_idle_sessions.delay().get() == 1
    stale.refresh_from_db()
    assert stale.end_reason == "timeout"


@pytest.mark.django_db(transaction=True)
def test_expire_task_runs_on_a_real_worker_through_the_broker():
    """The task goes through the broker (Redis in CI, in-memory otherwise) to a worker started here."""
    from celery.contrib.testing.worker import start_worker
    from celery.signals import task_postrun

    from config.celery import app

    stale = _stale_session()
    # No result backend: the worker's own signal says when the task has run. The test reads
    # the database only then: on SQLite's shared-cache test database a read here while the
    # worker writes makes the worker's write fail at once ("database table is locked").
    ran = threading.Event()
    states: list[str] = []

    def finished(*args, state=None, **kwargs):
        states.append(state)
        ran.set()

    task_postrun.connect(finished, sender=expire_idle_sessions, weak=False)
    app.conf.task_always_eager = False
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            result = expire_idle_sessions.apply_async()
            assert ran.wait(20), "the worker did not run the task"
    finally:
        app.conf.task_always_eager = True
        task_postrun.disconnect(finished, sender=expire_idle_sessions)
    assert result.id
    assert states == ["SUCCESS"]
    stale.refresh_from_db()
    assert stale.ended_at is not None and stale.end_reason == "timeout"


@pytest.mark.django_db
def test_setup_periodic_tasks_is_idempotent():
    out = StringIO()
    call_command("setup_periodic_tasks", stdout=out)
    call_command("setup_periodic_tasks", stdout=out)
    tasks = PeriodicTask.objects.filter(task="sessions_app.tasks.expire_idle_sessions")
    assert tasks.count() == 1
    task = tasks.get()
    assert task.enabled and task.interval.every == 60 and task.expire_seconds == 60
    assert "updated" in out.getvalue()


@pytest.mark.django_db
def test_setup_periodic_tasks_follows_changed_settings(settings):
    call_command("setup_periodic_tasks", stdout=StringIO())
    settings.SESSION_EXPIRY_SWEEP_SECONDS = 120
    call_command("setup_periodic_tasks", stdout=StringIO())
    task = PeriodicTask.objects.get(task="sessions_app.tasks.expire_idle_sessions")
    assert task.interval.every == 120
