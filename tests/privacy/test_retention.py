"""Retention: purges with an advanced clock, dry runs, batches, the command, the daily job."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone

from privacy.audit import audit_log, audit_verify
from privacy.ledger import consent_record
from privacy.models import AuditEntry, ConsentRecord, DataSubjectRequest, ErasureTombstone, RetentionPolicy
from privacy.retention import retention_apply, retention_policy_update
from sessions_app.models import BehaviorEvent, DeviceFingerprint, UserSession
from tests.sessions_app.factories import BehaviorEventFactory, UserSessionFactory

pytestmark = pytest.mark.django_db


def _old_and_new_data(now):
    """Data 14 months old and data from today."""
    with time_machine.travel(now - timedelta(days=430), tick=False):
        old_session = UserSessionFactory()
        BehaviorEventFactory.create_batch(5, session=old_session)
        DeviceFingerprint.objects.create(
            neuron=old_session.neuron,
            fingerprint_hash="old" * 6,
            first_seen_at=timezone.now(),
            last_seen_at=timezone.now(),
        )
        consent_record(neuron=old_session.neuron, session=old_session, decisions={"analytics": True}, source="api")
    new_session = UserSessionFactory()
    BehaviorEventFactory.create_batch(2, session=new_session)
    consent_record(neuron=new_session.neuron, session=new_session, decisions={"analytics": True}, source="api")
    return old_session, new_session


def test_default_policies_exist_with_sensible_durations():
    """Events and sessions 13 months, and every data type has a policy."""
    days = dict(RetentionPolicy.objects.values_list("data_type", "duration_days"))
    assert days["events"] == 395 and days["sessions"] == 395
    assert set(days) == {"events", "sessions", "fingerprints", "consent_records", "dsar_records", "audit_log"}


def test_dry_run_counts_and_deletes_nothing():
    """A dry run reports what it would purge and writes only its audit entry."""
    now = timezone.now()
    old, new = _old_and_new_data(now)
    result = retention_apply(dry_run=True)
    assert result.purged["events"] == 5 and result.purged["sessions"] == 1 and result.purged["fingerprints"] == 1
    assert BehaviorEvent.objects.count() == 7 and UserSession.objects.count() == 2
    assert AuditEntry.objects.get().action == "retention.dry_run"
    assert RetentionPolicy.objects.get(data_type="events").last_run_at is None


def test_purge_deletes_only_expired_rows_in_batches_and_audits():
    """Old events, sessions and fingerprints go; today's stay; consent proof outlives its session."""
    now = timezone.now()
    old, new = _old_and_new_data(now)
    seen = []
    result = retention_apply(batch_size=2, progress=lambda data_type, n: seen.append((data_type, n)))
    assert result.purged["events"] == 5 and result.purged["sessions"] == 1
    assert ("events", 2) in seen  # bounded batches
    assert list(UserSession.objects.all()) == [new]
    assert BehaviorEvent.objects.count() == 2
    assert not DeviceFingerprint.objects.exists()
    # The old consent record survives its session (3-year policy), detached from it.
    assert ConsentRecord.objects.filter(session__isnull=True, anonymous_id=old.anonymous_id).count() == 1
    entry = AuditEntry.objects.get(action="retention.run")
    assert entry.details["purged"]["events"] == 5
    policy = RetentionPolicy.objects.get(data_type="events")
    assert policy.last_purged == 5 and policy.last_run_at is not None
    # Idempotent: a second run finds nothing.
    assert retention_apply().purged["events"] == 0


def test_advancing_the_clock_expires_todays_data():
    """In 400 days, today's events are past the 13-month policy."""
    now = timezone.now()
    _old_and_new_data(now)
    with time_machine.travel(now + timedelta(days=400)):
        retention_apply()
    assert not BehaviorEvent.objects.exists() and not UserSession.objects.exists()


def test_consent_and_request_records_and_tombstones_expire_on_their_own_policies():
    """3-year records go after 3 years; the audit log is purged through its anchored path."""
    now = timezone.now()
    with time_machine.travel(now - timedelta(days=1200), tick=False):
        session = UserSessionFactory()
        consent_record(neuron=session.neuron, session=session, decisions={"analytics": True}, source="api")
        DataSubjectRequest.objects.create(
            kind="erase",
            status="verified",
            subject_type="userId",
            subject_hash="h" * 64,
            requested_by="staff",
            created_at=timezone.now(),
            completed_at=timezone.now(),
        )
        ErasureTombstone.objects.create(identifier_hash="t" * 64, kind="userId", created_at=timezone.now())
    with time_machine.travel(now - timedelta(days=2200), tick=False):
        audit_log(actor="system", action="ancient", subject="x")
    audit_log(actor="system", action="recent", subject="x")
    result = retention_apply()
    assert result.purged["consent_records"] == 1
    assert result.purged["dsar_records"] == 2
    assert result.purged["audit_log"] == 1
    assert not DataSubjectRequest.objects.exists() and not ErasureTombstone.objects.exists()
    assert not AuditEntry.objects.filter(action="ancient").exists()
    assert audit_verify().ok


def test_disabled_policy_purges_nothing():
    now = timezone.now()
    _old_and_new_data(now)
    RetentionPolicy.objects.filter(data_type="events").update(enabled=False)
    result = retention_apply()
    assert "events" not in result.purged
    # Sessions still go, and with them their events (they belong to the session).
    assert UserSession.objects.count() == 1


def test_policy_change_is_audited(staff_user):
    policy = RetentionPolicy.objects.get(data_type="events")
    retention_policy_update(policy=policy, duration_days=200, enabled=True, actor=staff_user)
    entry = AuditEntry.objects.get(action="retention.policy_changed")
    assert entry.details == {
        "before": {"durationDays": 395, "enabled": True},
        "after": {"durationDays": 200, "enabled": True},
    }
    assert entry.actor.startswith("user:")


def test_apply_retention_command_dry_run_and_real():
    """`manage.py apply_retention [--dry-run]` prints what it would delete, then deletes it."""
    now = timezone.now()
    _old_and_new_data(now)
    out = StringIO()
    call_command("apply_retention", "--dry-run", stdout=out, stderr=StringIO())
    assert "events: would delete 5" in out.getvalue()
    assert BehaviorEvent.objects.count() == 7
    out = StringIO()
    call_command("apply_retention", stdout=out, stderr=StringIO())
    assert "events: deleted 5" in out.getvalue()
    assert BehaviorEvent.objects.count() == 2


def test_daily_job_is_scheduled_and_runs():
    """The beat schedule has the daily purge, and the task runs it."""
    from django_celery_beat.models import PeriodicTask

    from privacy.tasks import apply_retention

    call_command("setup_periodic_tasks", stdout=StringIO())
    task = PeriodicTask.objects.get(task="privacy.tasks.apply_retention")
    assert task.interval.every == 86400 and task.expire_seconds == 86400
    now = timezone.now()
    _old_and_new_data(now)
    assert apply_retention.delay().get()["events"] == 5


def test_admin_edit_of_a_policy_is_audited(client, django_user_model):
    """Changing a duration in the admin goes through the audited service."""
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-123")
    client.force_login(user)
    policy = RetentionPolicy.objects.get(data_type="fingerprints")
    response = client.post(
        f"/admin/privacy/retentionpolicy/{policy.pk}/change/", {"duration_days": 90, "enabled": "on"}
    )
    assert response.status_code == 302, response.content[:500]
    policy.refresh_from_db()
    assert policy.duration_days == 90
    entry = AuditEntry.objects.get(action="retention.policy_changed")
    assert entry.details["before"]["durationDays"] == 180 and entry.details["after"]["durationDays"] == 90


def test_admin_cannot_delete_audit_entries_or_consent_records(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-123")
    client.force_login(user)
    audit_log(actor="system", action="x", subject="y")
    entry = AuditEntry.objects.get()
    assert client.get(f"/admin/privacy/auditentry/{entry.pk}/delete/").status_code == 403
    assert client.get("/admin/privacy/consentrecord/").status_code == 200
