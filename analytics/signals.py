"""Receivers keeping derived analytics rows in step with what they copy."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete
from django.dispatch import receiver

from analytics.models import SessionSequence
from analytics.services import sequence_day_mark_stale


@receiver(post_delete, sender=SessionSequence, dispatch_uid="analytics.sequence_day_stale")
def sequence_deleted(sender: type[SessionSequence], instance: SessionSequence, **kwargs: Any) -> None:
    """A sequence deleted with its session, by erasure or by retention: its day's SequenceDay
    no longer matches (and holds that session's events), so it is blanked in the same transaction."""
    sequence_day_mark_stale(neuron_id=instance.neuron_id, started_at=instance.started_at)
