"""Consent ledger, data-subject requests, tombstones, retention policies and the audit log.

Two tables here are append-only: the consent ledger (proof under GDPR Art. 7(1)
must not be rewritten) and the audit log (hash-chained; on PostgreSQL a trigger
also rejects UPDATE and DELETE). Their managers refuse bulk `update()`, and
their `save()` refuses to change a stored row, so no code path edits history.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.db import models

from config.api.json_numbers import JSONDecoder
from federation.models import Neuron


class AppendOnlyError(Exception):
    """A write tried to change a row of an append-only table."""


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> int:
        raise AppendOnlyError(f"{self.model.__name__} is append-only: rows are never updated.")


class AuditQuerySet(AppendOnlyQuerySet):
    def delete(self) -> tuple[int, dict[str, int]]:
        # Audit retention goes through privacy.audit.audit_purge, which keeps the chain verifiable.
        raise AppendOnlyError("AuditEntry rows are removed only by privacy.audit.audit_purge.")


class AppendOnlyModel(models.Model):
    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError(f"{type(self).__name__} is append-only: rows are never updated.")
        super().save(*args, **kwargs)


# ---------------------------------------------------------------------------
# Audit log
# ---------------------------------------------------------------------------


class AuditEntry(AppendOnlyModel):
    """One privileged action. `entry_hash = sha256(prev_hash ‖ canonical JSON of the entry)`.

    `seq` is the position in the chain; it is unique, so two concurrent appends can
    never both claim the same predecessor (privacy.audit serialises appends).
    `subject` is an opaque reference (a request id, a profile's public id), never
    a raw user identifier.
    """

    seq = models.BigIntegerField(unique=True)
    created_at = models.DateTimeField()
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=100)
    subject = models.CharField(max_length=200, blank=True, default="")
    details = models.JSONField(decoder=JSONDecoder, default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    entry_hash = models.CharField(max_length=64, unique=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        db_table = "privacy_audit_log"
        ordering = ["seq"]
        indexes = [
            models.Index(fields=["action", "created_at"], name="audit_action_time_idx"),
            models.Index(fields=["actor", "created_at"], name="audit_actor_time_idx"),
            models.Index(fields=["subject", "created_at"], name="audit_subject_time_idx"),
            models.Index(fields=["created_at"], name="audit_time_idx"),
        ]
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} by {self.actor}"

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("AuditEntry rows are removed only by privacy.audit.audit_purge.")


# ---------------------------------------------------------------------------
# Consent ledger
# ---------------------------------------------------------------------------


class ConsentSource(models.TextChoices):
    BANNER = "banner", "Consent banner"
    API = "api", "API call"
    GPC = "gpc", "Global Privacy Control signal"
    TCF = "tcf", "IAB TCF string"
    ADMIN = "admin", "Changed by staff"


class ConsentRecord(AppendOnlyModel):
    """One decision for one purpose, with what Art. 7(1) needs to prove it.

    Rows are appended, never changed: the current consent of a subject is the
    latest row per purpose. A GPC opt-out reaching a linked profile is recorded
    against that profile (no session). Deleted only by erasure or retention.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    neuron = models.ForeignKey(Neuron, on_delete=models.CASCADE, related_name="consent_records")
    # SET_NULL: proof of consent outlives the session it was given in (retention purges
    # sessions after 13 months, consent records after 3 years); erasure deletes both.
    session = models.ForeignKey(
        "sessions_app.UserSession", null=True, blank=True, on_delete=models.SET_NULL, related_name="consent_records"
    )
    profile = models.ForeignKey(
        "sessions_app.GlobalUserProfile",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="consent_records",
    )
    anonymous_id = models.CharField(max_length=128, blank=True, default="")
    purpose = models.CharField(max_length=32)
    granted = models.BooleanField()
    policy_version = models.CharField(max_length=64, blank=True, default="")
    # SHA-256 of the notice text the visitor was shown (hex), as the client reports it.
    text_hash = models.CharField(max_length=64, blank=True, default="")
    source = models.CharField(max_length=16, choices=ConsentSource.choices)
    # The controllers (sites) relying on this decision.
    controllers = models.ManyToManyField(Neuron, related_name="relied_consent_records", blank=True)
    recorded_at = models.DateTimeField()
    ip_truncated = models.CharField(max_length=64, blank=True, default="")
    user_agent = models.CharField(max_length=512, blank=True, default="")
    recorded_by = models.CharField(max_length=200, blank=True, default="", help_text="Staff actor, for admin changes.")

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        db_table = "privacy_consent_records"
        indexes = [
            models.Index(fields=["session", "purpose", "-recorded_at"], name="consent_session_purpose_idx"),
            models.Index(fields=["profile", "purpose", "-recorded_at"], name="consent_profile_purpose_idx"),
            models.Index(fields=["neuron", "recorded_at"], name="consent_neuron_time_idx"),
            models.Index(fields=["recorded_at"], name="consent_time_idx"),
        ]

    def __str__(self) -> str:
        verb = "granted" if self.granted else "refused"
        return f"{self.purpose} {verb} ({self.source})"


# ---------------------------------------------------------------------------
# Data-subject requests and tombstones
# ---------------------------------------------------------------------------


class RequestKind(models.TextChoices):
    EXPORT = "export", "Export (Art. 20)"
    ERASE = "erase", "Erasure (Art. 17)"


class RequestStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    VERIFIED = "verified", "Verified"
    FAILED = "failed", "Failed"


class SubjectType(models.TextChoices):
    USER_ID = "userId", "User id"
    PROFILE_ID = "profileId", "Profile id"
    SESSION_ID = "sessionId", "Session id"
    ANONYMOUS_ID = "anonymousId", "Anonymous id"


# An erasure still to run or running (DataSubjectRequest's partial unique constraints).
OPEN_ERASURE = models.Q(kind=RequestKind.ERASE, status__in=[RequestStatus.PENDING, RequestStatus.RUNNING])


class DataSubjectRequest(models.Model):
    """An export or erasure request and its lifecycle: pending → running → completed → verified.

    The subject identifier is kept as a keyed hash (to find the request again
    after erasure) plus an encrypted copy that exists only while the request
    runs; it is cleared when the request finishes.

    `neuron` confines the request to one site: set when a visitor asks with a session
    token (the token's site), null for staff (every site). At most one erasure is open
    (pending or running) per subject and confinement; a second one returns the first.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    neuron = models.ForeignKey(
        Neuron,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="data_subject_requests",
        help_text="The only site the request reaches (a visitor's own); empty for staff requests (every site).",
    )
    kind = models.CharField(max_length=8, choices=RequestKind.choices)
    status = models.CharField(max_length=12, choices=RequestStatus.choices, default=RequestStatus.PENDING)
    subject_type = models.CharField(max_length=16, choices=SubjectType.choices)
    subject_hash = models.CharField(max_length=64)
    subject_encrypted = models.TextField(blank=True, default="")
    requested_by = models.CharField(max_length=200)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    # Counts per table (erase), or the tables exported; no personal data.
    summary = models.JSONField(decoder=JSONDecoder, default=dict, blank=True)
    # The export document, Fernet-encrypted; cleared by retention.
    result_encrypted = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "privacy_data_subject_requests"
        indexes = [
            models.Index(fields=["subject_hash", "kind", "-created_at"], name="dsar_subject_idx"),
            models.Index(fields=["status", "created_at"], name="dsar_status_idx"),
        ]
        constraints = [
            # One open erasure per subject: concurrent DELETEs of the same subject make one request.
            models.UniqueConstraint(
                fields=["subject_hash"],
                condition=OPEN_ERASURE & models.Q(neuron__isnull=True),
                name="dsar_one_open_erasure",
            ),
            models.UniqueConstraint(
                fields=["subject_hash", "neuron"],
                condition=OPEN_ERASURE & models.Q(neuron__isnull=False),
                name="dsar_one_open_erasure_per_site",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} request {self.public_id} ({self.status})"


class ErasureTombstone(models.Model):
    """An erased identifier, as a keyed hash only: later data carrying it is dropped.

    On the erasure's site only when a visitor erased themselves with a session token (the same
    anonymous id on another site is someone else there); on every site for a staff erasure."""

    identifier_hash = models.CharField(max_length=64, db_index=True)
    neuron = models.ForeignKey(
        Neuron,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="The only site where data carrying the identifier is dropped; empty: every site.",
    )
    kind = models.CharField(max_length=16, choices=SubjectType.choices)
    request = models.ForeignKey(
        DataSubjectRequest, null=True, blank=True, on_delete=models.SET_NULL, related_name="tombstones"
    )
    created_at = models.DateTimeField()

    class Meta:
        db_table = "privacy_erasure_tombstones"
        constraints = [
            models.UniqueConstraint(
                fields=["identifier_hash"], condition=models.Q(neuron__isnull=True), name="tombstone_every_site_uniq"
            ),
            models.UniqueConstraint(
                fields=["identifier_hash", "neuron"],
                condition=models.Q(neuron__isnull=False),
                name="tombstone_per_site_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"tombstone {self.kind} {self.identifier_hash[:12]}…"


# ---------------------------------------------------------------------------
# Retention
# ---------------------------------------------------------------------------


class DataType(models.TextChoices):
    EVENTS = "events", "Behaviour events"
    SESSIONS = "sessions", "Sessions"
    FINGERPRINTS = "fingerprints", "Device fingerprints"
    CONSENT_RECORDS = "consent_records", "Consent records"
    DSAR_RECORDS = "dsar_records", "Data-subject requests and tombstones"
    AUDIT_LOG = "audit_log", "Audit log"


# Defaults: events and sessions 13 months (the CNIL's guidance for audience
# measurement); fingerprints 6 months; consent proof 3 years, outliving the
# data it justifies; request records 3 years; the audit log 6 years.
RETENTION_DEFAULT_DAYS: dict[str, int] = {
    DataType.EVENTS: 395,
    DataType.SESSIONS: 395,
    DataType.FINGERPRINTS: 180,
    DataType.CONSENT_RECORDS: 1095,
    DataType.DSAR_RECORDS: 1095,
    DataType.AUDIT_LOG: 2190,
}


class RetentionPolicy(models.Model):
    data_type = models.CharField(max_length=32, choices=DataType.choices, unique=True)
    duration_days = models.PositiveIntegerField()
    enabled = models.BooleanField(default=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_purged = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "privacy_retention_policies"
        verbose_name_plural = "retention policies"
        ordering = ["data_type"]
        constraints = [models.CheckConstraint(condition=models.Q(duration_days__gte=1), name="retention_days_min_1")]

    def __str__(self) -> str:
        return f"{self.get_data_type_display()}: {self.duration_days} days"

    @property
    def duration(self) -> timedelta:
        return timedelta(days=self.duration_days)
