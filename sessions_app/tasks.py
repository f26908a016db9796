from __future__ import annotations

from celery import shared_task

from sessions_app.services import session_expire_idle


@shared_task(acks_late=True, time_limit=300, soft_time_limit=240)
def expire_idle_sessions() -> int:
    """End sessions idle past their timeout. Idempotent: safe to run twice at once."""
    return session_expire_idle()
