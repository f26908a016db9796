from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from sessions_app.linking import identity_link_session, identity_link_sweep
from sessions_app.services import session_expire_idle


@shared_task(acks_late=True, time_limit=300, soft_time_limit=240)
def expire_idle_sessions() -> int:
    """End sessions idle past their timeout. Idempotent: safe to run twice at once."""
    return session_expire_idle()


@shared_task(acks_late=True, time_limit=120, soft_time_limit=100)
def link_session(session_id: int) -> int:
    """Score one session's cross-device links. Idempotent (row locks per pair): safe to redeliver."""
    return identity_link_session(session_id=session_id).merged


@shared_task(acks_late=True, time_limit=900, soft_time_limit=840)
def link_sweep() -> int:
    """Re-score sessions active since two sweep intervals ago: catches links whose task was lost."""
    since = timezone.now() - 2 * timedelta(seconds=settings.IDENTITY_LINK_SWEEP_SECONDS)
    return identity_link_sweep(since=since).merged
