from __future__ import annotations

from django.db import models


class Neuron(models.Model):
    """A site or app that sends sessions and events (a member of the federation).

    The publishable key identifies the site to browsers and is not secret. The
    secret key authenticates servers; only its SHA-256 is stored, it is shown once.
    """

    slug = models.SlugField(max_length=64, unique=True, help_text="The neuronId used in the API.")
    name = models.CharField(max_length=200)
    publishable_key = models.CharField(max_length=64, unique=True)
    secret_key_hash = models.CharField(max_length=64, unique=True)
    secret_key_prefix = models.CharField(max_length=12, help_text="First characters, to recognise the key.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "neurons"
        ordering = ["slug"]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"
