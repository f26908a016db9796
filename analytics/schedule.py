"""Periodic jobs of the analytics app, installed by `manage.py setup_periodic_tasks`."""

from __future__ import annotations

from django.conf import settings


def periodic_jobs() -> list[dict]:
    return [
        {
            "name": "analytics: roll up closed hours and days",
            "task": "analytics.tasks.advance_rollups",
            "every_seconds": settings.ANALYTICS_ROLLUP_EVERY_SECONDS,
        },
        {
            "name": "analytics: rebuild rollups whose rows changed",
            "task": "analytics.tasks.reconcile_rollups",
            "every_seconds": settings.ANALYTICS_RECONCILE_EVERY_SECONDS,
        },
    ]
