from __future__ import annotations

from importlib import import_module
from importlib.util import find_spec

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask


def periodic_jobs() -> list[dict]:
    """Every app may declare its jobs in `<app>/schedule.py` as `periodic_jobs()`."""
    jobs: list[dict] = []
    for config in apps.get_app_configs():
        module_name = f"{config.name}.schedule"
        if find_spec(module_name) is not None:
            jobs.extend(import_module(module_name).periodic_jobs())
    return jobs


class Command(BaseCommand):
    help = "Install or update the Celery beat schedule. Idempotent: run it on every deploy."

    @transaction.atomic
    def handle(self, *args, **options):
        for job in periodic_jobs():
            every = int(job["every_seconds"])
            schedule, _ = IntervalSchedule.objects.get_or_create(every=every, period=IntervalSchedule.SECONDS)
            _, created = PeriodicTask.objects.update_or_create(
                name=job["name"],
                defaults={
                    "task": job["task"],
                    "interval": schedule,
                    "crontab": None,
                    "enabled": True,
                    # A run that could not start within one interval is dropped, not queued up.
                    "expires": None,
                    "expire_seconds": every,
                },
            )
            verb = "created" if created else "updated"
            self.stdout.write(f"{verb}: {job['name']} every {every}s -> {job['task']}")
