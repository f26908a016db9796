"""Personalization jobs: thin wrappers that take ids and call a service. All are idempotent."""

from __future__ import annotations

from celery import shared_task

from federation.models import Neuron
from personalization.services import (
    archetypes_compute,
    interest_profile_recompute,
    recommendations_compute,
    segments_materialize,
)
from sessions_app.models import GlobalUserProfile


def _neuron_ids() -> list[int]:
    return list(Neuron.objects.filter(is_active=True).order_by("pk").values_list("pk", flat=True))


@shared_task(acks_late=True, time_limit=900, soft_time_limit=840)
def materialize_segments(neuron_id: int) -> dict[str, int]:
    neuron = Neuron.objects.filter(pk=neuron_id).first()
    return segments_materialize(neuron=neuron) if neuron else {}


@shared_task(acks_late=True, time_limit=60, soft_time_limit=50)
def materialize_all_segments() -> int:
    """Fan out one job per site, so one big site does not hold up the others."""
    ids = _neuron_ids()
    for neuron_id in ids:
        materialize_segments.delay(neuron_id)
    return len(ids)


@shared_task(acks_late=True, time_limit=1800, soft_time_limit=1740)
def compute_archetypes(neuron_id: int) -> int:
    neuron = Neuron.objects.filter(pk=neuron_id).first()
    return len(archetypes_compute(neuron=neuron)) if neuron else 0


@shared_task(acks_late=True, time_limit=60, soft_time_limit=50)
def compute_all_archetypes() -> int:
    ids = _neuron_ids()
    for neuron_id in ids:
        compute_archetypes.delay(neuron_id)
    return len(ids)


@shared_task(acks_late=True, time_limit=1800, soft_time_limit=1740)
def compute_recommendations(neuron_id: int) -> dict[str, int]:
    neuron = Neuron.objects.filter(pk=neuron_id).first()
    return recommendations_compute(neuron=neuron) if neuron else {}


@shared_task(acks_late=True, time_limit=60, soft_time_limit=50)
def compute_all_recommendations() -> int:
    ids = _neuron_ids()
    for neuron_id in ids:
        compute_recommendations.delay(neuron_id)
    return len(ids)


@shared_task(acks_late=True, time_limit=300, soft_time_limit=240)
def recompute_profile_interest(profile_id: int) -> bool:
    """For identity merges/splits that prefer to recompute after commit instead of inline."""
    profile = GlobalUserProfile.objects.filter(pk=profile_id).first()
    return bool(profile and interest_profile_recompute(profile=profile))
