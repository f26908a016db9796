"""Celery application: settings from Django (CELERY_*), tasks autodiscovered from apps."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("session_engine")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
