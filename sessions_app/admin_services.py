"""Bulk writes operators make through the admin API. Each is bounded, can be dry-run, and is audited."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from config.api.errors import NotFound, Unprocessable
from privacy.models import DataSubjectRequest, RequestKind, SubjectType
from privacy.services import audit_log, dsar_submit
from sessions_app.models import EndReason, UserSession

METADATA_MAX_BYTES = 16 * 1024  # the same cap session_update applies to one session
CHUNK = 1000


@dataclass(frozen=True)
class BulkResult:
    matched: int
    changed: int
    dry_run: bool
    limit: int


def _bounded_ids(*, queryset: QuerySet[UserSession], limit: int, verb: str = "change") -> list[int]:
    # One row past the limit tells "too many" apart from "exactly the limit" without a COUNT.
    ids = list(queryset.order_by("id").values_list("id", flat=True)[: limit + 1])
    if len(ids) > limit:
        matched = queryset.count()
        raise Unprocessable(
            f"The selection matches {matched} sessions; at most {limit} may {verb} at once. Narrow the filter.",
            extra={"matched": matched, "limit": limit},
        )
    return ids


def _merged_metadata(
    current: Mapping[str, Any],
    *,
    metadata: Mapping[str, Any] | None,
    tags_add: Iterable[str],
    tags_remove: Iterable[str],
) -> dict[str, Any]:
    merged = {**current, **(metadata or {})}
    tags = set(merged.get("tags") or []) if isinstance(merged.get("tags"), list) else set()
    tags |= set(tags_add)
    tags -= set(tags_remove)
    if tags or "tags" in merged:
        merged["tags"] = sorted(tags)
    return merged


@transaction.atomic
def sessions_bulk_update(
    *,
    actor: Any,
    queryset: QuerySet[UserSession],
    selection: Mapping[str, Any],
    end: bool = False,
    tags_add: list[str] | None = None,
    tags_remove: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    dry_run: bool = False,
    limit: int | None = None,
) -> BulkResult:
    """End sessions and/or set tags and metadata on a selection of at most `limit` sessions.

    A dry run reports how many sessions match (even above the limit) and writes nothing.
    `selection` is the filter document as the operator sent it, kept in the audit entry.
    """
    limit = limit or settings.ADMIN_BULK_MAX_SESSIONS
    if dry_run:
        matched = queryset.count()
        return BulkResult(matched=matched, changed=0, dry_run=True, limit=limit)

    ids = _bounded_ids(queryset=queryset, limit=limit)
    changed: set[int] = set()
    now = timezone.now()
    if end:
        live = list(UserSession.objects.filter(pk__in=ids, ended_at__isnull=True).values_list("id", flat=True))
        # One UPDATE instead of session_end per row; the WHERE re-checks ended_at so a
        # session the client ended meanwhile keeps its own end time and reason.
        UserSession.objects.filter(pk__in=live, ended_at__isnull=True).update(
            ended_at=now, end_reason=EndReason.ADMIN, expires_at=now
        )
        changed.update(live)

    if metadata or tags_add or tags_remove:
        for start in range(0, len(ids), CHUNK):
            rows = list(
                UserSession.objects.filter(pk__in=ids[start : start + CHUNK]).only("id", "public_id", "metadata")
            )
            dirty = []
            for row in rows:
                merged = _merged_metadata(
                    row.metadata or {}, metadata=metadata, tags_add=tags_add or [], tags_remove=tags_remove or []
                )
                if merged == row.metadata:
                    continue
                if len(orjson.dumps(merged)) > METADATA_MAX_BYTES:
                    raise Unprocessable(
                        f"Session {row.public_id} would exceed {METADATA_MAX_BYTES} bytes of metadata; "
                        "nothing changed.",
                    )
                row.metadata = merged
                dirty.append(row)
            UserSession.objects.bulk_update(dirty, ["metadata"], batch_size=CHUNK)
            changed.update(row.id for row in dirty)

    audit_log(
        actor=actor,
        action="sessions.bulk_update",
        subject=f"sessions:{len(ids)}",
        details={
            "selection": dict(selection),
            "matched": len(ids),
            "changed": len(changed),
            "end": end,
            "tagsAdd": sorted(tags_add or []),
            "tagsRemove": sorted(tags_remove or []),
            "metadataKeys": sorted(metadata or {}),
        },
    )
    return BulkResult(matched=len(ids), changed=len(changed), dry_run=False, limit=limit)


def sessions_export_audit(*, actor: Any, selection: Mapping[str, Any], count: int, export_format: str) -> None:
    """An export hands personal data to an operator: record who took what."""
    audit_log(
        actor=actor,
        action="sessions.export",
        subject=f"sessions:{count}",
        details={"selection": dict(selection), "count": count, "format": export_format},
    )


@dataclass(frozen=True)
class EraseResult:
    matched: int
    people: int | None  # None: a dry run above the limit does not group its sessions
    requests: list[DataSubjectRequest]
    dry_run: bool
    limit: int


def _people(ids: list[int]) -> dict[tuple[str, Any], str]:
    """One representative session (its public id) per person among the given sessions.

    Erasure widens a session to its person (privacy.subjects.subject_scope): every
    session of its profile, and the device's anonymous sessions. One request per
    person erases them all; a request per session would file requests that find
    nothing left to erase. Sessions without a profile are grouped by their device.
    """
    people: dict[tuple[str, Any], str] = {}
    for start in range(0, len(ids), CHUNK):
        rows = (
            UserSession.objects.filter(pk__in=ids[start : start + CHUNK])
            .order_by("id")
            .values_list("public_id", "profile_id", "neuron_id", "anonymous_id")
        )
        for public_id, profile_id, neuron_id, anonymous_id in rows:
            key = ("profile", profile_id) if profile_id else ("device", (neuron_id, anonymous_id))
            people.setdefault(key, str(public_id))
    return people


@transaction.atomic
def sessions_erase(
    *,
    actor: Any,
    queryset: QuerySet[UserSession],
    selection: Mapping[str, Any],
    dry_run: bool = False,
    limit: int | None = None,
) -> EraseResult:
    """Delete a selection of sessions the only way personal data leaves: data-subject erasure.

    Each person behind the selection gets one erasure request (privacy.dsar), which runs
    after commit (a Celery task) and removes that person from every registered table,
    leaves tombstones and verifies. At most `limit` sessions; a dry run counts any size and
    writes nothing. Audited with the selection, the counts and the request ids.
    """
    limit = limit or settings.ADMIN_DELETE_MAX_SESSIONS
    if dry_run:
        matched = queryset.count()
        people = None
        if matched <= limit:
            people = len(_people(list(queryset.order_by("id").values_list("id", flat=True)[: limit + 1])))
        return EraseResult(matched=matched, people=people, requests=[], dry_run=True, limit=limit)

    ids = _bounded_ids(queryset=queryset, limit=limit, verb="be erased")
    people = _people(ids)
    requests = []
    for public_id in people.values():
        try:
            request, _ = dsar_submit(
                kind=RequestKind.ERASE, value=public_id, subject_type=SubjectType.SESSION_ID, requested_by=actor
            )
        except NotFound:
            continue  # erased meanwhile (a concurrent request): nothing left to do for this person
        requests.append(request)
    audit_log(
        actor=actor,
        action="sessions.delete",
        subject=f"sessions:{len(ids)}",
        details={
            "selection": dict(selection),
            "matched": len(ids),
            "people": len(people),
            "requests": [str(r.public_id) for r in requests],
        },
    )
    return EraseResult(matched=len(ids), people=len(people), requests=requests, dry_run=False, limit=limit)
