from __future__ import annotations

from celery import shared_task

from privacy.dsar import dsar_run
from privacy.retention import retention_apply


# Idempotent (a finished request is left as it is; an interrupted one runs again), so acks_late.
@shared_task(acks_late=True, time_limit=1800, soft_time_limit=1700)
def run_data_subject_request(request_id: int) -> str:
    return dsar_run(request_id=request_id).status


@shared_task(acks_late=True, time_limit=3600, soft_time_limit=3500)
def apply_retention() -> dict[str, int]:
    """The daily purge. Idempotent: a second run finds nothing more to delete."""
    return retention_apply(actor="system:retention").purged
