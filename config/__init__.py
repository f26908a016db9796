# Load Celery with Django so @shared_task binds to this app everywhere.
from config.celery import app as celery_app

__all__ = ("celery_app",)
