from __future__ import annotations

from celery import shared_task

from analytics.services import rollup_advance, rollup_reconcile


@shared_task(acks_late=True, time_limit=1800, soft_time_limit=1700)
def advance_rollups() -> dict[str, int]:
    """Roll up newly closed hours and days. Idempotent: periods are rebuilt, never added to."""
    return rollup_advance()


@shared_task(acks_late=True, time_limit=1800, soft_time_limit=1700)
def reconcile_rollups() -> dict[str, int]:
    """Rebuild recent closed periods whose raw rows changed (late events, erasures)."""
    return rollup_reconcile()
