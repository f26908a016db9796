"""Retention: delete what has been kept long enough, in bounded batches, and say what went.

Which tables a policy covers is declared in the personal-data registry
(`retention` and `retention_field` of each entry), plus the privacy app's own
records: data-subject requests and tombstones (`dsar_records`) and the audit
log (`audit_log`, through privacy.audit.audit_purge, which keeps the chain
verifiable). Each run, dry or real, writes an audit entry with its counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from privacy.audit import audit_log, audit_purge
from privacy.models import DataSubjectRequest, DataType, ErasureTombstone, RequestStatus, RetentionPolicy
from privacy.registry import personal_data_registry

Progress = Callable[[str, int], None]


@dataclass
class RetentionResult:
    dry_run: bool
    purged: dict[str, int] = field(default_factory=dict)
    cutoffs: dict[str, str] = field(default_factory=dict)


def retention_targets(data_type: str, cutoff: datetime) -> list[models.QuerySet]:
    """The rows of a data type that are older than `cutoff` (the audit log is handled apart)."""
    targets = [
        entry.model_class._default_manager.filter(**{f"{entry.retention_field}__lt": cutoff})
        for entry in personal_data_registry().entries
        if entry.retention == data_type
    ]
    if data_type == DataType.DSAR_RECORDS:
        finished = [RequestStatus.COMPLETED, RequestStatus.VERIFIED, RequestStatus.FAILED]
        targets.append(
            DataSubjectRequest.objects.annotate(done=Coalesce("completed_at", "created_at")).filter(
                Q(status__in=finished) & Q(done__lt=cutoff)
            )
        )
        targets.append(ErasureTombstone.objects.filter(created_at__lt=cutoff))
    return targets


def _purge(queryset: models.QuerySet, *, batch_size: int, dry_run: bool, data_type: str, progress: Progress) -> int:
    if dry_run:
        n = queryset.count()
        progress(data_type, n)
        return n
    model = queryset.model
    total = 0
    while True:
        ids = list(queryset.order_by().values_list("pk", flat=True)[:batch_size])
        if not ids:
            return total
        # One short transaction per batch: a long purge never holds locks for long.
        with transaction.atomic():
            model._default_manager.filter(pk__in=ids).delete()
        total += len(ids)
        progress(data_type, len(ids))
        if len(ids) < batch_size:
            return total


def retention_pending(*, now: datetime | None = None) -> dict[str, int]:
    """How many rows each enabled policy would purge now."""
    now = now or timezone.now()
    out: dict[str, int] = {}
    for policy in RetentionPolicy.objects.filter(enabled=True):
        cutoff = now - policy.duration
        n = sum(qs.count() for qs in retention_targets(policy.data_type, cutoff))
        if policy.data_type == DataType.AUDIT_LOG:
            n += audit_purge(before=cutoff, actor="system", dry_run=True)
        out[policy.data_type] = n
    return out


def retention_apply(
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    batch_size: int | None = None,
    actor: Any = "system:retention",
    progress: Progress | None = None,
) -> RetentionResult:
    """Purge everything past its policy (or only count it, with dry_run) and audit the run."""
    now = now or timezone.now()
    batch_size = batch_size or settings.RETENTION_BATCH_SIZE
    progress = progress or (lambda data_type, n: None)
    result = RetentionResult(dry_run=dry_run)
    for policy in RetentionPolicy.objects.filter(enabled=True):
        cutoff = now - policy.duration
        result.cutoffs[policy.data_type] = cutoff.isoformat()
        if policy.data_type == DataType.AUDIT_LOG:
            n = audit_purge(before=cutoff, actor=actor, dry_run=dry_run)
            progress(policy.data_type, n)
        else:
            n = sum(
                _purge(qs, batch_size=batch_size, dry_run=dry_run, data_type=policy.data_type, progress=progress)
                for qs in retention_targets(policy.data_type, cutoff)
            )
        result.purged[policy.data_type] = n
        if not dry_run:
            RetentionPolicy.objects.filter(pk=policy.pk).update(last_run_at=now, last_purged=n)
    audit_log(
        actor=actor,
        action="retention.dry_run" if dry_run else "retention.run",
        subject="retention",
        details={"purged": result.purged, "cutoffs": result.cutoffs},
    )
    return result


@transaction.atomic
def retention_policy_update(
    *, policy: RetentionPolicy, duration_days: int, enabled: bool, actor: Any
) -> RetentionPolicy:
    """Change a policy (admin): audited, with the old and new values."""
    # From the database: an admin form has already set the new values on `policy`.
    stored = RetentionPolicy.objects.select_for_update().get(pk=policy.pk)
    before = {"durationDays": stored.duration_days, "enabled": stored.enabled}
    policy.duration_days = duration_days
    policy.enabled = enabled
    policy.full_clean()
    policy.save(update_fields=["duration_days", "enabled", "updated_at"])
    audit_log(
        actor=actor,
        action="retention.policy_changed",
        subject=f"retention:{policy.data_type}",
        details={"before": before, "after": {"durationDays": duration_days, "enabled": enabled}},
    )
    return policy
