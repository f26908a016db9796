"""Periodic jobs of the privacy app, installed by `manage.py setup_periodic_tasks`."""

from __future__ import annotations


def periodic_jobs() -> list[dict]:
    return [
        {
            "name": "privacy: apply retention policies",
            "task": "privacy.tasks.apply_retention",
            "every_seconds": 24 * 3600,
        },
    ]
