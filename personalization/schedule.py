"""Periodic jobs of personalization, installed by `manage.py setup_periodic_tasks`."""

from __future__ import annotations

from django.conf import settings


def periodic_jobs() -> list[dict]:
    return [
        {
            "name": "personalization: materialize segments",
            "task": "personalization.tasks.materialize_all_segments",
            "every_seconds": settings.PERSONALIZATION_SEGMENT_REFRESH_SECONDS,
        },
        {
            "name": "personalization: compute archetypes",
            "task": "personalization.tasks.compute_all_archetypes",
            "every_seconds": settings.PERSONALIZATION_ARCHETYPE_REFRESH_SECONDS,
        },
        {
            "name": "personalization: learn item co-occurrence",
            "task": "personalization.tasks.compute_all_recommendations",
            "every_seconds": settings.PERSONALIZATION_RECOMMEND_REFRESH_SECONDS,
        },
    ]
