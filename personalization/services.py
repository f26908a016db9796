"""Writes for personalization: interest vectors, profile engagement, segments and their lists."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from config.api.errors import Conflict, ValidationFailed
from federation.models import Neuron
from personalization.interests import (
    Contribution,
    EventLike,
    contributions_from_events,
    decay_factor,
    weights_add,
    weights_at,
)
from personalization.models import (
    Archetype,
    ArchetypeMembership,
    ItemKind,
    ItemNeighbour,
    ItemPopularity,
    ProfileInterest,
    Segment,
    SegmentMembership,
    SessionInterest,
)
from personalization.recommend import cooccurrence_build, event_items
from personalization.rules import rule_validate
from personalization.selectors import (
    category_rules_for,
    preferences_get,
    segments_evaluate,
    sessions_for_materialization,
)
from privacy.audit import audit_log
from privacy.consent import has_consent
from sessions_app.models import BehaviorEvent, GlobalUserProfile, UserSession

# Sessions whose engagement counts toward a profile's score: the most recent ones.
PROFILE_ENGAGEMENT_SESSIONS = 50
MATERIALIZE_BATCH = 500


def _half_life():
    return settings.PERSONALIZATION_INTEREST_HALF_LIFE


# ---------------------------------------------------------------------------
# Interest vectors
# ---------------------------------------------------------------------------


def _vector_add(row: SessionInterest | ProfileInterest, contributions: Sequence[Contribution], events: int) -> None:
    row.weights, as_of = weights_add(
        row.weights,
        as_of=row.as_of,
        contributions=contributions,
        half_life=_half_life(),
        max_categories=settings.PERSONALIZATION_MAX_CATEGORIES,
    )
    row.as_of = as_of or row.as_of
    row.event_count += events


def profile_engagement(*, profile: GlobalUserProfile, now: datetime | None = None) -> tuple[float, int]:
    """(score 0..100, sessions counted): the recency-weighted mean of its sessions' engagement.

    Each session weighs 2^(−age / half-life) by its last activity, so a profile that
    was very engaged a year ago and bounces now reads as not engaged.
    """
    now = now or timezone.now()
    rows = list(
        UserSession.objects.filter(profile=profile)
        .order_by("-last_activity_at")
        .values_list("engagement_score", "last_activity_at")[:PROFILE_ENGAGEMENT_SESSIONS]
    )
    if not rows:
        return 0.0, 0
    weights = [decay_factor(elapsed=max(now - at, timedelta(0)), half_life=_half_life()) for _, at in rows]
    total = sum(weights)
    score = sum(score * w for (score, _), w in zip(rows, weights, strict=True)) / total if total else 0.0
    return round(min(max(score, 0.0), 100.0), 2), len(rows)


def _locked_vector(model: type[SessionInterest] | type[ProfileInterest], *, as_of: datetime, **key: int):
    """The vector row, locked (read-modify-write of its JSON), created when missing.

    A session's row is already serialised by ingestion's session lock; a profile's
    can be raced by two of its sessions, so a failed insert re-reads the winner's row.
    """
    for _ in range(2):
        row = model.objects.select_for_update().filter(**key).first()
        if row is not None:
            return row
        try:
            with transaction.atomic():
                return model.objects.create(as_of=as_of, **key)
        except IntegrityError:
            continue
    raise RuntimeError(f"could not lock or create the {model.__name__} row")


# No savepoint of its own when nested: it runs inside every ingest transaction, where a
# savepoint would be two more round trips per batch and the caller's rollback covers it.
@transaction.atomic(savepoint=False)
def interest_update_from_events(*, session: UserSession, events: Iterable[EventLike]) -> bool:
    """Fold newly stored events into the session's vector and its profile's. Returns whether anything changed.

    Called by ingestion inside its transaction (sessions_app.ingestion.events_stored),
    so the visitor's next request already sees the update and a rolled-back batch
    leaves no trace. Only with personalization consent: without it no interest
    profile is built at all. Queries: two for the session's vector, three more
    (with the engagement read) for its profile's, whatever the batch size.
    """
    if not has_consent(session.consent, "personalization"):
        return False
    events = list(events)
    now = timezone.now()
    contributions = contributions_from_events(
        events, path_rules=category_rules_for(neuron_id=session.neuron_id), not_after=now
    )
    if not contributions:
        return False
    first_at = min(c.at for c in contributions)
    row = _locked_vector(SessionInterest, as_of=first_at, session_id=session.pk)
    _vector_add(row, contributions, len(events))
    row.save(update_fields=["weights", "as_of", "event_count", "updated_at"])
    if session.profile_id:
        profile_row = _locked_vector(ProfileInterest, as_of=first_at, profile_id=session.profile_id)
        _vector_add(profile_row, contributions, len(events))
        profile_row.engagement_score, profile_row.session_count = profile_engagement(
            profile=GlobalUserProfile(pk=session.profile_id), now=now
        )
        profile_row.save(
            update_fields=["weights", "as_of", "event_count", "engagement_score", "session_count", "updated_at"]
        )
    return True


def _rebuild(events: Iterable[EventLike], *, neuron_id: int) -> tuple[dict[str, float], datetime | None, int]:
    rules = category_rules_for(neuron_id=neuron_id, fresh=True)
    weights: dict[str, float] = {}
    as_of: datetime | None = None
    count = 0
    chunk: list[EventLike] = []
    for event in events:
        chunk.append(event)
        if len(chunk) >= 2000:
            weights, as_of = weights_add(
                weights,
                as_of=as_of,
                contributions=contributions_from_events(chunk, path_rules=rules),
                half_life=_half_life(),
                max_categories=settings.PERSONALIZATION_MAX_CATEGORIES,
            )
            count += len(chunk)
            chunk = []
    weights, as_of = weights_add(
        weights,
        as_of=as_of,
        contributions=contributions_from_events(chunk, path_rules=rules),
        half_life=_half_life(),
        max_categories=settings.PERSONALIZATION_MAX_CATEGORIES,
    )
    return weights, as_of, count + len(chunk)


_EVENT_FIELDS = ("event_type", "event_name", "properties", "page_path", "timestamp", "received_at")


@transaction.atomic
def interest_session_recompute(*, session: UserSession) -> SessionInterest | None:
    """Rebuild a session's vector from its stored events (None, and no row, without consent)."""
    if not has_consent(session.consent, "personalization"):
        SessionInterest.objects.filter(session=session).delete()
        return None
    events = BehaviorEvent.objects.filter(session=session).only(*_EVENT_FIELDS).order_by("timestamp", "pk")
    weights, as_of, count = _rebuild(events.iterator(chunk_size=2000), neuron_id=session.neuron_id)
    if as_of is None:
        SessionInterest.objects.filter(session=session).delete()
        return None
    row, _ = SessionInterest.objects.update_or_create(
        session=session, defaults={"weights": weights, "as_of": as_of, "event_count": count}
    )
    return row


@transaction.atomic
def interest_profile_recompute(*, profile: GlobalUserProfile) -> ProfileInterest | None:
    """Rebuild a profile's vector and engagement from the events of the sessions it now owns.

    The profile's events are those identity assigns to it (BehaviorEvent.profile,
    moved by merges, splits and device attachment). Identity calls this for both
    sides after a merge or a split: because decay is
    order-independent, the result equals what incremental updates would have built
    had the sessions always belonged to this profile. Only sessions with
    personalization consent contribute. A profile merged into another keeps no vector.
    """
    if profile.merged_into_id:
        ProfileInterest.objects.filter(profile=profile).delete()
        return None
    now = timezone.now()
    events = (
        BehaviorEvent.objects.filter(profile=profile, session__consent__personalization=True)
        .only(*_EVENT_FIELDS)
        .order_by("timestamp", "pk")
    )
    weights, as_of, count = _rebuild(events.iterator(chunk_size=2000), neuron_id=profile.neuron_id)
    engagement, sessions = profile_engagement(profile=profile, now=now)
    if as_of is None and sessions == 0:
        ProfileInterest.objects.filter(profile=profile).delete()
        return None
    row, _ = ProfileInterest.objects.update_or_create(
        profile=profile,
        defaults={
            "weights": weights,
            "as_of": as_of or now,
            "event_count": count,
            "engagement_score": engagement,
            "session_count": sessions,
        },
    )
    return row


@transaction.atomic
def interest_forget(*, session: UserSession) -> None:
    """Personalization consent withdrawn: drop the session's vector and rebuild its profile's without it."""
    SessionInterest.objects.filter(session=session).delete()
    if session.profile_id:
        interest_profile_recompute(profile=GlobalUserProfile.objects.get(pk=session.profile_id))


# ---------------------------------------------------------------------------
# Segments
# ---------------------------------------------------------------------------


def _segment_slug(*, neuron: Neuron, slug: str | None, name: str) -> str:
    value = slugify(slug or name)[:64]
    if not value:
        raise ValidationFailed(errors={"slug": ["A slug (or a name to derive it from) is required."]})
    return value


def _slug_taken(slug: str) -> Conflict:
    return Conflict(f"A segment with slug {slug!r} already exists on this site.", errors={"slug": ["Taken."]})


@contextlib.contextmanager
def _slug_unique(slug: str) -> Iterator[None]:
    """Run the INSERT/UPDATE that stores `slug` in a savepoint: the check before it cannot see a
    concurrent writer of the same slug, so the unique constraint (the table's only one besides
    the key) decides, and its violation is the same 409 as the check's, not a 500."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError as exc:
        raise _slug_taken(slug) from exc


@transaction.atomic
def segment_create(
    *,
    neuron: Neuron,
    name: str,
    rule: dict[str, Any],
    slug: str | None = None,
    description: str = "",
    is_active: bool = True,
    actor: Any = None,
) -> Segment:
    """Create a rule segment (rule validated first). Audited: segments decide who is targeted."""
    rule_validate(rule)
    slug = _segment_slug(neuron=neuron, slug=slug, name=name)
    if Segment.objects.filter(neuron=neuron, slug=slug).exists():
        raise _slug_taken(slug)
    with _slug_unique(slug):
        segment = Segment.objects.create(
            neuron=neuron, slug=slug, name=name, description=description, rule=rule, is_active=is_active
        )
    audit_log(actor=actor, action="segment.create", subject=f"segment:{segment.pk}", details={"rule": rule})
    return segment


@transaction.atomic
def segment_update(*, segment: Segment, changes: dict[str, Any], actor: Any = None) -> Segment:
    """Apply the given fields (name, slug, description, rule, isActive); a new rule is validated first."""
    segment = Segment.objects.select_for_update().get(pk=segment.pk)
    if "rule" in changes:
        rule_validate(changes["rule"])
        segment.rule = changes["rule"]
        # The old list no longer describes this rule: empty it until the next materialization.
        SegmentMembership.objects.filter(segment=segment).delete()
        segment.size = 0
        segment.materialized_at = None
    if "slug" in changes:
        slug = _segment_slug(neuron=segment.neuron, slug=changes["slug"], name=segment.name)
        if Segment.objects.filter(neuron_id=segment.neuron_id, slug=slug).exclude(pk=segment.pk).exists():
            raise _slug_taken(slug)
        segment.slug = slug
    for key in ("name", "description", "is_active"):
        if key in changes:
            setattr(segment, key, changes[key])
    with _slug_unique(segment.slug):
        segment.save()
    audit_log(actor=actor, action="segment.update", subject=f"segment:{segment.pk}", details={"changes": changes})
    return segment


@transaction.atomic
def segment_delete(*, segment: Segment, actor: Any = None) -> None:
    audit_log(actor=actor, action="segment.delete", subject=f"segment:{segment.pk}", details={"slug": segment.slug})
    segment.delete()


def segments_materialize(*, neuron: Neuron, now: datetime | None = None) -> dict[str, int]:
    """Recompute the member lists of every active segment of a neuron. Returns {slug: size}.

    Sessions are evaluated in batches through the same code as live evaluation;
    each segment's list is then swapped in one transaction, so readers see the
    old list or the new one, never a half-written one. Idempotent.
    """
    now = now or timezone.now()
    segments = list(Segment.objects.filter(neuron=neuron, is_active=True))
    if not segments:
        return {}
    members: dict[int, list[int]] = {segment.pk: [] for segment in segments}
    batch: list[UserSession] = []

    def flush() -> None:
        for segment_id, session_ids in segments_evaluate(segments=segments, sessions=batch, now=now).items():
            members[segment_id].extend(sorted(session_ids))
        batch.clear()

    for session in sessions_for_materialization(neuron_id=neuron.pk, now=now).iterator(chunk_size=MATERIALIZE_BATCH):
        batch.append(session)
        if len(batch) >= MATERIALIZE_BATCH:
            flush()
    if batch:
        flush()

    sizes: dict[str, int] = {}
    for segment in segments:
        with transaction.atomic():
            SegmentMembership.objects.filter(segment=segment).delete()
            SegmentMembership.objects.bulk_create(
                [SegmentMembership(segment=segment, session_id=sid, computed_at=now) for sid in members[segment.pk]],
                batch_size=1000,
            )
            Segment.objects.filter(pk=segment.pk).update(size=len(members[segment.pk]), materialized_at=now)
        sizes[segment.slug] = len(members[segment.pk])
    return sizes


# ---------------------------------------------------------------------------
# Archetypes
# ---------------------------------------------------------------------------

ARCHETYPE_DIMENSIONS = 64
ARCHETYPE_MIN_PROFILES = 4
ARCHETYPE_LABEL_CATEGORIES = 3


def _archetype_names(centroid: dict[str, float], taken: set[str]) -> tuple[str, str, list[str]]:
    ranked = sorted(centroid.items(), key=lambda item: (-item[1], item[0]))
    top = [c for c, w in ranked[:ARCHETYPE_LABEL_CATEGORIES] if ranked and w >= 0.25 * ranked[0][1]]
    base = slugify("-".join(top))[:56] or "general"
    key, suffix = base, 2
    while key in taken:
        key, suffix = f"{base}-{suffix}", suffix + 1
    taken.add(key)
    label = " & ".join(c.replace("-", " ").capitalize() for c in top) or "General"
    return key, label, top


@transaction.atomic
def archetypes_compute(*, neuron: Neuron, now: datetime | None = None, seed: int = 0) -> list[Archetype]:
    """Cluster the neuron's profile interest vectors (k by silhouette) and replace its archetypes.

    Vectors are decayed to `now` and restricted to the ARCHETYPE_DIMENSIONS
    categories with the most total weight. Fewer than ARCHETYPE_MIN_PROFILES
    profiles with interests: no archetypes (clusters of three people say nothing).
    """
    import numpy as np

    from personalization.clustering import cluster

    now = now or timezone.now()
    rows = list(
        ProfileInterest.objects.filter(profile__neuron=neuron, profile__merged_into__isnull=True).only(
            "profile_id", "weights", "as_of"
        )
    )
    vectors: list[tuple[int, dict[str, float]]] = []
    for row in rows:
        weights = weights_at(row.weights, as_of=row.as_of, at=now, half_life=_half_life())
        if any(w > 0 for w in weights.values()):
            vectors.append((row.profile_id, weights))
    Archetype.objects.filter(neuron=neuron).delete()
    if len(vectors) < ARCHETYPE_MIN_PROFILES:
        return []
    totals: dict[str, float] = {}
    for _, weights in vectors:
        for category, w in weights.items():
            totals[category] = totals.get(category, 0.0) + w
    vocabulary = [c for c, _ in sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:ARCHETYPE_DIMENSIONS]]
    matrix = np.array([[weights.get(c, 0.0) for c in vocabulary] for _, weights in vectors])
    keep = matrix.sum(axis=1) > 0
    matrix = matrix[keep]
    vectors = [v for v, k in zip(vectors, keep.tolist(), strict=True) if k]
    if len(vectors) < ARCHETYPE_MIN_PROFILES:
        return []
    result = cluster(matrix, max_k=settings.PERSONALIZATION_ARCHETYPE_MAX_K, seed=seed)
    taken: set[str] = set()
    archetypes: list[Archetype] = []
    for index in range(result.k):
        centroid = {c: round(float(w), 6) for c, w in zip(vocabulary, result.centroids[index], strict=True) if w > 1e-3}
        key, label, top = _archetype_names(centroid, taken)
        archetypes.append(
            Archetype(
                neuron=neuron,
                key=key,
                label=label,
                top_categories=top,
                centroid=centroid,
                size=int((result.labels == index).sum()),
                silhouette=result.silhouette,
                computed_at=now,
            )
        )
    Archetype.objects.bulk_create(archetypes)
    ArchetypeMembership.objects.filter(profile_id__in=[pid for pid, _ in vectors]).delete()
    ArchetypeMembership.objects.bulk_create(
        [
            ArchetypeMembership(
                profile_id=profile_id, archetype=archetypes[int(label)], distance=round(float(distance), 6)
            )
            for (profile_id, _), label, distance in zip(vectors, result.labels, result.distances, strict=True)
        ],
        batch_size=1000,
    )
    return archetypes


# ---------------------------------------------------------------------------
# Recommendations
# ---------------------------------------------------------------------------


def item_histories(*, neuron: Neuron, since: datetime) -> dict[str, dict[str, list[str]]]:
    """{kind: {visitor: [items, oldest first]}} from events of visitors with personalization consent.

    A visitor is a profile, or a session without one. Purchased items count as
    viewed too (nobody buys what they have not looked at).
    """
    events = (
        BehaviorEvent.objects.filter(neuron=neuron, timestamp__gte=since, session__consent__personalization=True)
        .order_by("timestamp", "pk")
        .values_list("profile_id", "session_id", "event_type", "event_name", "properties")
    )
    histories: dict[str, dict[str, list[str]]] = {ItemKind.VIEWED: {}, ItemKind.BOUGHT: {}}
    for profile_id, session_id, event_type, event_name, properties in events.iterator(chunk_size=5000):
        purchase, items = event_items(event_type=event_type, event_name=event_name, properties=properties)
        if not items:
            continue
        visitor = f"p{profile_id}" if profile_id else f"s{session_id}"
        histories[ItemKind.VIEWED].setdefault(visitor, []).extend(items)
        if purchase:
            histories[ItemKind.BOUGHT].setdefault(visitor, []).extend(items)
    return histories


@transaction.atomic
def recommendations_compute(*, neuron: Neuron, now: datetime | None = None) -> dict[str, int]:
    """Relearn the neuron's item neighbours and popularity from the window. Returns rows per kind."""
    now = now or timezone.now()
    histories = item_histories(neuron=neuron, since=now - settings.PERSONALIZATION_RECOMMEND_WINDOW)
    ItemNeighbour.objects.filter(neuron=neuron).delete()
    ItemPopularity.objects.filter(neuron=neuron).delete()
    written: dict[str, int] = {}
    for kind, by_visitor in histories.items():
        neighbours, visitors = cooccurrence_build(by_visitor.values())
        rows = [
            ItemNeighbour(
                neuron=neuron,
                kind=kind,
                item=item,
                neighbour=nb.item,
                score=nb.score,
                together=nb.together,
                computed_at=now,
            )
            for item, nbs in neighbours.items()
            for nb in nbs
        ]
        ItemNeighbour.objects.bulk_create(rows, batch_size=2000)
        ItemPopularity.objects.bulk_create(
            [
                ItemPopularity(neuron=neuron, kind=kind, item=item, visitors=count, computed_at=now)
                for item, count in visitors.items()
            ],
            batch_size=2000,
        )
        written[str(kind)] = len(rows)
    return written


# ---------------------------------------------------------------------------
# Adaptive UI preferences
# ---------------------------------------------------------------------------


@transaction.atomic
def preferences_update(
    *,
    session: UserSession,
    theme: str | None = None,
    language: str | None = None,
    reduced_motion: bool | None = None,
    layout: dict[str, bool] | None = None,
) -> dict[str, Any]:
    """Write UI preferences to the session's profile, so every device of that person gets them.

    Layout flags are merged flag by flag (a device that sets `compact` does not
    erase another device's `sidebar`); a flag set to null is removed. These are
    settings the visitor chose, kept to honour that choice: they are not gated by
    personalization consent.
    """
    from sessions_app.services import session_update

    current = preferences_get(session=session)
    changes: dict[str, Any] = {}
    if theme is not None:
        changes["theme"] = theme
    if language is not None:
        changes["language"] = language
    if reduced_motion is not None:
        changes["reducedMotion"] = reduced_motion
    if layout is not None:
        merged = {**current["layout"], **layout}
        changes["layout"] = {flag: value for flag, value in merged.items() if value is not None}
    if changes:
        session = session_update(session=session, preferences=changes).session
    return preferences_get(session=session)
