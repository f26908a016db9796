"""Data-subject requests: export (Art. 20) and erasure (Art. 17), run by Celery.

`dsar_submit` records the request (pending) and queues `privacy.tasks.run_data_subject_request`
after commit; `dsar_run` (the task's body) moves it running → completed → verified.

Both read the personal-data registry (privacy.registry): export writes one
section per registered table, so a table added later is exported with no code
here; erasure deletes every registered table's rows for the subject's scope
(privacy.subjects), then verification counts them again and must find none.
Tombstones (keyed hashes of the erased identifiers) make late data about the
subject be dropped.

A visitor asking with a session token reaches only what the token proves: its own
session. The request names that session (any other identifier, even the anonymous
id or user id the session carries, is a 404: the browser chose them, anyone can
claim them), records the token's site (`DataSubjectRequest.neuron`), and runs on
`privacy.subjects.session_scope`: the session's own rows, never its profile, its
anonymous id's other sessions, or rows matched by anonymous id or user-id hash.
Staff requests reach the whole person on every site (staff verify identity). One
erasure per subject is open at a time (a partial unique constraint): a second
DELETE returns the first request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from importlib import import_module
from typing import Any
from uuid import UUID

import orjson
from django.core.cache import cache
from django.db import IntegrityError, models, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from config.api.errors import NotFound
from privacy.audit import actor_label, audit_log
from privacy.crypto import decrypt, encrypt
from privacy.models import (
    DataSubjectRequest,
    ErasureTombstone,
    RequestKind,
    RequestStatus,
    SubjectType,
)
from privacy.registry import PersonalData, personal_data_registry
from privacy.subjects import (
    SubjectScope,
    request_scope,
    session_scope,
    subject_hash,
    subject_identifiers,
    subject_scope,
)
from sessions_app.models import UserSession

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "session-engine/subject-export/1"
# Auto-detection order for an identifier whose type the caller did not state.
AUTO_TYPES_UUID = (SubjectType.PROFILE_ID, SubjectType.SESSION_ID, SubjectType.ANONYMOUS_ID, SubjectType.USER_ID)
AUTO_TYPES_OTHER = (SubjectType.ANONYMOUS_ID, SubjectType.USER_ID)
# Registered tables whose relations point at these scope sets: values outside the scope are someone else's.
SCOPE_OF_MODEL = {
    "sessions_app.GlobalUserProfile": "profiles",
    "sessions_app.UserSession": "sessions",
    "sessions_app.DeviceFingerprint": "fingerprints",
}


# ---------------------------------------------------------------------------
# Scope and rows
# ---------------------------------------------------------------------------


# Scope sets of row ids: found on the scope's site only, so they match nothing of another site.
ID_SCOPE_KEYS = frozenset({"profiles", "sessions", "fingerprints"})


def _site_field(model: type[models.Model]) -> str | None:
    for f in model._meta.concrete_fields:
        if f.name == "neuron" and f.is_relation:
            return f.attname
    return None


def entry_q(entry: PersonalData, scope: SubjectScope) -> Q | None:
    """Rows of `entry` that belong to the subject, or None when the scope gives no value to match.

    A scope confined to one site matches only that site's rows: a table with a `neuron` is
    filtered by it; in a table without one, only links by row id (found on the site) count,
    never a value (an anonymous id, a user-id hash) that another site's rows may carry too."""
    site_field = _site_field(entry.model_class) if scope.neuron_id is not None else None
    q = Q()
    matched = False
    for key, path in entry.paths():
        if scope.neuron_id is not None and site_field is None and key not in ID_SCOPE_KEYS:
            continue
        values = scope.values(key)
        if values:
            q |= Q(**{f"{path}__in": sorted(values)})
            matched = True
    if not matched:
        return None
    if site_field is not None:
        q = Q(**{site_field: scope.neuron_id}) & q
    return q


def subject_rows(entry: PersonalData, scope: SubjectScope) -> models.QuerySet:
    model = entry.model_class
    q = entry_q(entry, scope)
    if q is None:
        return model._default_manager.none()
    return model._default_manager.filter(q)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    return value


def _own_anonymous_ids(scope: SubjectScope) -> set[str]:
    """The anonymous ids a one-session scope may show: its session's own."""
    return set(UserSession.objects.filter(pk__in=scope.sessions).values_list("anonymous_id", flat=True))


def _export_rows(
    entry: PersonalData, scope: SubjectScope, own_anonymous: set[str] | None = None
) -> list[dict[str, Any]]:
    model = entry.model_class
    fields = [
        f for f in model._meta.concrete_fields if f.name not in entry.exclude and not (f.is_relation and f.many_to_many)
    ]
    redact: dict[str, set[Any]] = {}
    for f in fields:
        if f.is_relation and f.related_model is not None:
            key = SCOPE_OF_MODEL.get(f.related_model._meta.label)
            if key:
                redact[f.attname] = scope.values(key)
    if own_anonymous is not None:
        # One session's export: a link row's other side (another session's anonymous id) is not shown.
        names = {f.attname for f in fields}
        for key, path in entry.paths():
            if key == "anonymous_ids" and path in names:
                redact[path] = own_anonymous
    out = []
    for row in subject_rows(entry, scope).order_by("pk").values(*[f.attname for f in fields]).iterator(2000):
        for name in entry.encrypted:
            if row.get(name):
                row[name] = decrypt(row[name])
        for attname, allowed in redact.items():
            # A link to another person's profile or session shows that a link exists, not who.
            if row.get(attname) is not None and row[attname] not in allowed:
                row[attname] = None
        out.append({key: _jsonable(value) for key, value in row.items()})
    return out


def subject_export(*, scope: SubjectScope) -> dict[str, Any]:
    """The machine-readable document of everything held on the subject: one section per registered table."""
    from sessions_app.models import GlobalUserProfile

    user_ids = sorted(
        filter(
            None,
            (
                decrypt(token)
                for token in GlobalUserProfile.objects.filter(pk__in=scope.profiles).values_list(
                    "user_id_encrypted", flat=True
                )
            ),
        )
    )
    own_anonymous = _own_anonymous_ids(scope) if scope.session_only else None
    tables = {}
    for entry in personal_data_registry().entries:
        tables[entry.model] = {"description": entry.description, "rows": _export_rows(entry, scope, own_anonymous)}
    return {
        "format": EXPORT_FORMAT,
        "generatedAt": timezone.now().isoformat(),
        "subject": {**subject_identifiers(scope), "userIds": user_ids},
        "tables": tables,
    }


def _cache_keys(scope: SubjectScope) -> list[str]:
    keys: list[str] = []
    for entry in personal_data_registry().entries:
        if entry.cache_keys:
            module, _, name = entry.cache_keys.rpartition(".")
            keys.extend(getattr(import_module(module), name)(scope))
    return keys


def subject_erase(*, scope: SubjectScope) -> dict[str, int]:
    """Delete every registered row of the subject, children before parents, and derived cache entries."""
    counts: dict[str, int] = {}
    for entry in personal_data_registry().erase_order():
        _, per_model = subject_rows(entry, scope).delete()
        for label, n in per_model.items():
            counts[label] = counts.get(label, 0) + n
    keys = _cache_keys(scope)
    if keys:
        try:
            cache.delete_many(keys)
        except Exception:  # a cache outage must not undo the erasure; the keys expire on their own
            logger.warning("erasure: could not delete %d derived cache keys", len(keys))
    counts["cacheKeys"] = len(keys)
    return counts


def subject_remaining(*, scope: SubjectScope) -> dict[str, int]:
    """Rows still matching the subject's identifiers in any registered table (verification wants none)."""
    remaining = {}
    for entry in personal_data_registry().entries:
        n = subject_rows(entry, scope).count()
        if n:
            remaining[entry.model] = n
    return remaining


# ---------------------------------------------------------------------------
# Tombstones
# ---------------------------------------------------------------------------


def _tombstone_values(*, scope: SubjectScope, subject_type: str, value: str) -> list[tuple[str, str]]:
    from sessions_app.models import GlobalUserProfile

    if scope.session_only:
        # A session token's erasure: only the session id was proven; the anonymous id and user id it
        # carried may be someone else's, whose later data must not be dropped.
        sessions = subject_identifiers(scope)["sessionIds"]
        if subject_type == SubjectType.SESSION_ID:
            sessions.append(value)
        return sorted({(SubjectType.SESSION_ID, s) for s in sessions})
    pairs = {(subject_type, value)}
    pairs |= {(SubjectType.ANONYMOUS_ID, a) for a in scope.anonymous_ids}
    for token in GlobalUserProfile.objects.filter(pk__in=scope.profiles).values_list("user_id_encrypted", flat=True):
        user_id = decrypt(token)
        if user_id:
            pairs.add((SubjectType.USER_ID, user_id))
    ident = subject_identifiers(scope)
    pairs |= {(SubjectType.PROFILE_ID, p) for p in ident["profileIds"]}
    pairs |= {(SubjectType.SESSION_ID, s) for s in ident["sessionIds"]}
    return sorted(pairs)


def tombstones_create(*, pairs: list[tuple[str, str]], request: DataSubjectRequest) -> int:
    now = timezone.now()
    rows = [
        ErasureTombstone(
            identifier_hash=subject_hash(subject_type=t, value=v),
            neuron_id=request.neuron_id,
            kind=t,
            request=request,
            created_at=now,
        )
        for t, v in pairs
    ]
    ErasureTombstone.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def _tombstones_on(neuron_id: int) -> QuerySet[ErasureTombstone]:
    """The tombstones that hold on a site: its own and every staff erasure's."""
    return ErasureTombstone.objects.filter(Q(neuron__isnull=True) | Q(neuron_id=neuron_id))


def identifiers_erased(*, identifiers: Iterable[tuple[str, str]], neuron_id: int) -> set[tuple[str, str]]:
    """The (subject_type, value) pairs that belonged to subjects erased on the site, in one query (for batches)."""
    by_hash = {subject_hash(subject_type=t, value=v): (t, v) for t, v in identifiers if v}
    if not by_hash:
        return set()
    found = (
        _tombstones_on(neuron_id).filter(identifier_hash__in=list(by_hash)).values_list("identifier_hash", flat=True)
    )
    return {by_hash[h] for h in found}


def identifier_is_erased(*, subject_type: str, value: str, neuron_id: int) -> bool:
    """True when this identifier belonged to a subject erased on the site: data carrying it must be dropped."""
    if not value:
        return False
    return (
        _tombstones_on(neuron_id).filter(identifier_hash=subject_hash(subject_type=subject_type, value=value)).exists()
    )


# ---------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------


def subject_locate(
    *, value: str, subject_type: str | None = None, neuron_id: int | None = None
) -> tuple[str, SubjectScope]:
    """The subject type and scope of an identifier (on one site, or every site when `neuron_id`
    is None); NotFound when nothing is held on it."""
    if subject_type:
        types: tuple[str, ...] = (subject_type,)
    else:
        try:
            UUID(value)
            types = AUTO_TYPES_UUID
        except ValueError:
            types = AUTO_TYPES_OTHER
    for candidate in types:
        scope = subject_scope(subject_type=candidate, value=value, neuron_id=neuron_id)
        if not scope.is_empty():
            return candidate, scope
    raise NotFound("No data is held on this subject.")


def _erased_request(*, value: str, subject_type: str | None) -> DataSubjectRequest | None:
    types = (subject_type,) if subject_type else tuple(SubjectType.values)
    for candidate in types:
        digest = subject_hash(subject_type=candidate, value=value)
        tombstone = ErasureTombstone.objects.filter(identifier_hash=digest).select_related("request").first()
        if tombstone is not None and tombstone.request is not None:
            return tombstone.request
    return None


def _open_request(*, kind: str, digest: str, neuron_id: int | None) -> DataSubjectRequest | None:
    """The request of this kind about the subject still to run or running, if any."""
    open_statuses = [RequestStatus.PENDING, RequestStatus.RUNNING]
    return DataSubjectRequest.objects.filter(
        kind=kind, status__in=open_statuses, subject_hash=digest, neuron_id=neuron_id
    ).first()


def _own_session_subject(*, session: UserSession, value: str, subject_type: str | None) -> tuple[str, str]:
    """(sessionId, the session's public id) when `value` names the token's own session; else NotFound."""
    if subject_type not in (None, SubjectType.SESSION_ID):
        raise NotFound("No data is held on this subject.")
    try:
        named = UUID(str(value))
    except ValueError:
        raise NotFound("No data is held on this subject.") from None
    if named != session.public_id or session_scope(session.pk, session.neuron_id).is_empty():
        raise NotFound("No data is held on this subject.")
    return SubjectType.SESSION_ID, str(session.public_id)


@transaction.atomic
def dsar_create(
    *,
    kind: str,
    value: str,
    requested_by: Any,
    subject_type: str | None = None,
    session: UserSession | None = None,
) -> tuple[DataSubjectRequest, bool]:
    """Record a request. Returns (request, created); erasing an erased subject returns its request, and
    erasing a subject whose erasure is still open (pending or running) returns that one (idempotent).

    `session`: a visitor asking with their own session token may only name that session (its public
    id, `idType` absent or sessionId): the token proves nothing more. Any other subject (another
    session, any anonymous id, user id or profile id, even the ones this session carries) is the same
    404 as an unknown one (no oracle for who exists). The request records the token's site and runs
    on that one session (`privacy.subjects.session_scope`). Without a session (staff) the request
    reaches the person on every site.
    """
    neuron_id = session.neuron_id if session is not None else None
    try:
        if session is not None:
            found_type, value = _own_session_subject(session=session, value=value, subject_type=subject_type)
        else:
            found_type, _ = subject_locate(value=value, subject_type=subject_type)
    except NotFound:
        if session is not None:
            raise
        if kind == RequestKind.ERASE:
            previous = _erased_request(value=value, subject_type=subject_type)
            if previous is not None:
                return previous, False
        raise
    digest = subject_hash(subject_type=found_type, value=value)
    # A request like one still open returns that one: erasing twice (also a unique constraint, for
    # concurrent DELETEs), or a client asking again for an export that is still being prepared
    # (each export would otherwise build and keep another encrypted document).
    open_request = _open_request(kind=kind, digest=digest, neuron_id=neuron_id)
    if open_request is not None:
        return open_request, False
    try:
        # A savepoint: a concurrent erasure of the same subject that committed first wins the
        # one-open-erasure constraint, and this call returns that request instead.
        with transaction.atomic():
            request = DataSubjectRequest.objects.create(
                kind=kind,
                neuron_id=neuron_id,
                subject_type=found_type,
                subject_hash=digest,
                subject_encrypted=encrypt(value),
                requested_by=actor_label(requested_by),
                created_at=timezone.now(),
            )
    except IntegrityError:
        if kind != RequestKind.ERASE:
            raise
        winner = (
            DataSubjectRequest.objects.filter(kind=RequestKind.ERASE, subject_hash=digest, neuron_id=neuron_id)
            .order_by("-created_at", "-pk")
            .first()
        )
        if winner is None:
            raise
        return winner, False
    audit_log(
        actor=requested_by,
        action=f"dsar.{kind}.requested",
        subject=f"dsar:{request.public_id}",
        details={"subjectType": found_type, **({"neuron": neuron_id} if neuron_id is not None else {})},
    )
    return request, True


def dsar_submit(
    *,
    kind: str,
    value: str,
    requested_by: Any,
    subject_type: str | None = None,
    session: UserSession | None = None,
) -> tuple[DataSubjectRequest, bool]:
    """Record the request and queue it after commit (at once when called outside a transaction)."""
    request, created = dsar_create(
        kind=kind, value=value, requested_by=requested_by, subject_type=subject_type, session=session
    )
    if created:
        from privacy.tasks import run_data_subject_request

        request_id = request.pk
        transaction.on_commit(lambda: run_data_subject_request.delay(request_id))
    return request, created


def _set_status(request: DataSubjectRequest, status: str, **fields: Any) -> None:
    request.status = status
    for key, value in fields.items():
        setattr(request, key, value)
    request.save(update_fields=["status", *fields])


def dsar_run(*, request_id: int) -> DataSubjectRequest:
    """Run a request. Idempotent: a finished request is returned as it is; a crashed one runs again."""
    with transaction.atomic():
        request = DataSubjectRequest.objects.select_for_update().get(pk=request_id)
        if request.status in (RequestStatus.COMPLETED, RequestStatus.VERIFIED, RequestStatus.FAILED):
            return request
        _set_status(request, RequestStatus.RUNNING, started_at=timezone.now())
    try:
        if request.kind == RequestKind.EXPORT:
            return _run_export(request)
        return _run_erase(request)
    except Exception as exc:
        logger.exception("data-subject request %s failed", request.public_id)
        with transaction.atomic():
            _set_status(request, RequestStatus.FAILED, error=type(exc).__name__, subject_encrypted="")
            audit_log(
                actor="system",
                action=f"dsar.{request.kind}.failed",
                subject=f"dsar:{request.public_id}",
                details={"error": type(exc).__name__},
            )
        return request


@transaction.atomic
def _run_export(request: DataSubjectRequest) -> DataSubjectRequest:
    value = decrypt(request.subject_encrypted) or ""
    scope = request_scope(subject_type=request.subject_type, value=value, neuron_id=request.neuron_id)
    document = subject_export(scope=scope)
    document["requestId"] = str(request.public_id)
    now = timezone.now()
    summary = {"tables": {label: len(section["rows"]) for label, section in document["tables"].items()}}
    _set_status(
        request,
        RequestStatus.COMPLETED,
        completed_at=now,
        summary=summary,
        result_encrypted=encrypt(orjson.dumps(document).decode()),
        subject_encrypted="",
    )
    audit_log(
        actor="system",
        action="dsar.export.completed",
        subject=f"dsar:{request.public_id}",
        details=summary,
    )
    return request


def _run_erase(request: DataSubjectRequest) -> DataSubjectRequest:
    value = decrypt(request.subject_encrypted) or ""
    with transaction.atomic():
        scope = request_scope(subject_type=request.subject_type, value=value, neuron_id=request.neuron_id)
        pairs = _tombstone_values(scope=scope, subject_type=request.subject_type, value=value)
        # Tombstones first, in the same transaction: an event racing the erasure is dropped.
        tombstones = tombstones_create(pairs=pairs, request=request)
        counts = subject_erase(scope=scope)
        summary = {"deleted": counts, "tombstones": tombstones, "scope": scope.as_counts()}
        _set_status(request, RequestStatus.COMPLETED, completed_at=timezone.now(), summary=summary)
        audit_log(actor="system", action="dsar.erase.completed", subject=f"dsar:{request.public_id}", details=summary)
    # Verification reads in a fresh transaction, after the deletion committed.
    with transaction.atomic():
        remaining = subject_remaining(scope=scope)
        rescope = request_scope(subject_type=request.subject_type, value=value, neuron_id=request.neuron_id)
        if not remaining and rescope.is_empty():
            _set_status(
                request,
                RequestStatus.VERIFIED,
                verified_at=timezone.now(),
                subject_encrypted="",
                summary={**summary, "verification": {"remaining": {}}},
            )
            audit_log(actor="system", action="dsar.erase.verified", subject=f"dsar:{request.public_id}", details={})
        else:
            detail = {"remaining": remaining, "rescope": rescope.as_counts()}
            _set_status(
                request,
                RequestStatus.FAILED,
                error="verification found the subject's rows after erasure",
                summary={**summary, "verification": detail},
            )
            audit_log(
                actor="system",
                action="dsar.erase.verification_failed",
                subject=f"dsar:{request.public_id}",
                details=detail,
            )
    return request


def dsar_document(request: DataSubjectRequest) -> dict[str, Any] | None:
    """The export document of a completed export request."""
    if request.kind != RequestKind.EXPORT or not request.result_encrypted:
        return None
    raw = decrypt(request.result_encrypted)
    return orjson.loads(raw) if raw else None


@transaction.atomic
def dsar_document_read(*, request: DataSubjectRequest, actor: Any) -> dict[str, Any]:
    """Hand out an export document; every read of someone's data is audited."""
    document = dsar_document(request)
    if document is None:
        raise NotFound("This request has no export document.")
    audit_log(actor=actor, action="dsar.export.read", subject=f"dsar:{request.public_id}", details={})
    return document
