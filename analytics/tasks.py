from __future__ import annotations

from celery import shared_task

from analytics.services import rollup_advance, rollup_reconcile, sequences_build_ended


@shared_task(acks_late=True, time_limit=1800, soft_time_limit=1700)
def advance_rollups() -> dict[str, int]:
    """Roll up newly closed hours and days, then write the sequences of sessions that ended
    since. Idempotent: periods and sequences are rebuilt, never added to."""
    result = rollup_advance()
    result["sequences"] = sequences_build_ended()
    return result


@shared_task(acks_late=True, time_limit=1800, soft_time_limit=1700)
def reconcile_rollups() -> dict[str, int]:
    """Rebuild recent closed periods whose raw rows changed (late events, erasures)."""
    return rollup_reconcile()
