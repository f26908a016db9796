"""Reads for privacy: the audit log, requests, and the privacy reports."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Max, Min, Q, QuerySet
from django.utils import timezone

from config.api.errors import NotFound, ValidationFailed
from privacy.audit import audit_verify
from privacy.consent import PURPOSES, consent_defaults
from privacy.dsar import subject_rows
from privacy.filters import AuditEntryFilter
from privacy.ledger import consent_current
from privacy.models import AuditEntry, DataSubjectRequest, RequestStatus, RetentionPolicy
from privacy.registry import personal_data_registry
from privacy.retention import retention_pending
from privacy.subjects import session_scope
from sessions_app.models import UserSession

OPEN_STATUSES = (RequestStatus.PENDING, RequestStatus.RUNNING)
CONSENT_RATE_WINDOW = timedelta(days=30)


def audit_entry_list(*, filters: dict[str, Any]) -> QuerySet[AuditEntry]:
    filterset = AuditEntryFilter(filters, queryset=AuditEntry.objects.all())
    if not filterset.is_valid():
        raise ValidationFailed(errors={k: [str(m) for m in v] for k, v in filterset.errors.items()})
    return filterset.qs


def data_subject_request_get(*, public_id: Any) -> DataSubjectRequest:
    request = DataSubjectRequest.objects.filter(public_id=public_id).first()
    if request is None:
        raise NotFound("No such request.")
    return request


def data_subject_request_list(*, public_ids: list[Any]) -> list[DataSubjectRequest]:
    """Requests by public id, in the order given (their current status, e.g. after an erasure ran)."""
    found = {r.public_id: r for r in DataSubjectRequest.objects.filter(public_id__in=public_ids)}
    return [found[p] for p in public_ids if p in found]


def session_get_by_public_id(*, public_id: Any) -> UserSession:
    session = UserSession.objects.select_related("neuron", "profile").filter(public_id=public_id).first()
    if session is None:
        raise NotFound("No such session.")
    return session


def privacy_report_for_session(*, session: UserSession, now: datetime | None = None) -> dict[str, Any]:
    """What is held about this visitor, their consents, and when each kind of data will be deleted."""
    now = now or timezone.now()
    # What the token proves: its own session (on its site), not the profile or anonymous id it carries.
    scope = session_scope(session.pk, session.neuron_id)
    policies = {p.data_type: p for p in RetentionPolicy.objects.filter(enabled=True)}
    held: dict[str, Any] = {}
    deletion: dict[str, Any] = {}
    for entry in personal_data_registry().entries:
        rows = subject_rows(entry, scope)
        if entry.retention_field:
            agg = rows.aggregate(n=Count("pk"), first=Min(entry.retention_field), last=Max(entry.retention_field))
        else:
            agg = {"n": rows.count(), "first": None, "last": None}
        held[entry.model] = {"description": entry.description, "rows": agg["n"]}
        policy = policies.get(entry.retention) if entry.retention else None
        if policy and agg["n"]:
            deletion[entry.model] = {
                "dataType": policy.data_type,
                "retentionDays": policy.duration_days,
                "nextDeletionAt": agg["first"] + policy.duration,
                "allDeletedBy": agg["last"] + policy.duration,
            }
        elif agg["n"]:
            deletion[entry.model] = {"dataType": None, "retentionDays": None, "note": "kept until erased"}
    ledger = consent_current(session=session)
    defaults = consent_defaults()
    consents = {}
    for purpose in PURPOSES:
        row = ledger.get(purpose)
        consents[purpose] = {
            "granted": bool((session.consent or {}).get(purpose, defaults[purpose])),
            "source": row["source"] if row else "default",
            "recordedAt": row["recorded_at"] if row else None,
            "policyVersion": row["policy_version"] if row else "",
        }
    return {
        "subject": {
            "sessionId": str(session.public_id),
            "anonymousId": session.anonymous_id,
            "identified": bool(session.profile_id and session.profile.user_id_hash),
        },
        "held": held,
        "consent": consents,
        "deletion": deletion,
    }


def privacy_report_site(*, now: datetime | None = None, window: timedelta = CONSENT_RATE_WINDOW) -> dict[str, Any]:
    """For staff: consent rates, open requests and their age, retention status, audit chain status.

    Consent rates count the sessions started within `window` (30 days unless asked otherwise)."""
    now = now or timezone.now()
    recent = UserSession.objects.filter(started_at__gte=now - window)
    aggregates = recent.aggregate(
        total=Count("pk"),
        gpc=Count("pk", filter=Q(gpc=True)),
        **{p: Count("pk", filter=Q(**{f"consent__{p}": True})) for p in PURPOSES},
    )
    total = aggregates.pop("total")
    gpc = aggregates.pop("gpc")
    open_requests = list(
        DataSubjectRequest.objects.filter(status__in=OPEN_STATUSES)
        .order_by("created_at")
        .values("public_id", "kind", "status", "created_at")[:100]
    )
    by_status = dict(
        DataSubjectRequest.objects.values_list("status").annotate(n=Count("pk")).values_list("status", "n")
    )
    pending = retention_pending(now=now)
    chain = audit_verify()
    return {
        "consentRates": {
            "windowDays": int(days) if (days := window / timedelta(days=1)).is_integer() else round(days, 3),
            "sessions": total,
            "granted": {p: aggregates[p] for p in PURPOSES},
            "rates": {p: (aggregates[p] / total if total else None) for p in PURPOSES},
            "gpc": gpc,
        },
        "requests": {
            "byStatus": by_status,
            "open": [
                {
                    "requestId": str(r["public_id"]),
                    "kind": r["kind"],
                    "status": r["status"],
                    "ageSeconds": int((now - r["created_at"]).total_seconds()),
                }
                for r in open_requests
            ],
            "oldestOpenAgeSeconds": int((now - open_requests[0]["created_at"]).total_seconds())
            if open_requests
            else None,
        },
        "retention": [
            {
                "dataType": p.data_type,
                "durationDays": p.duration_days,
                "enabled": p.enabled,
                "lastRunAt": p.last_run_at,
                "lastPurged": p.last_purged,
                "overdueRows": pending.get(p.data_type, 0),
            }
            for p in RetentionPolicy.objects.all()
        ],
        "auditChain": chain.as_dict(),
    }
