"""Periodic jobs of this app, installed by `manage.py setup_periodic_tasks`.

Each entry: a unique name, the task path, an interval in seconds, and `expires`
so that a backlog after an outage never runs the same job many times over.
"""

from __future__ import annotations

from django.conf import settings


def periodic_jobs() -> list[dict]:
    return [
        {
            "name": "sessions: expire idle sessions",
            "task": "sessions_app.tasks.expire_idle_sessions",
            "every_seconds": settings.SESSION_EXPIRY_SWEEP_SECONDS,
        },
        {
            "name": "identity: score cross-device links",
            "task": "sessions_app.tasks.link_sweep",
            "every_seconds": settings.IDENTITY_LINK_SWEEP_SECONDS,
        },
    ]
