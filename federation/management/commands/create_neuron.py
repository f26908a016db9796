from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from config.api.errors import ApplicationError
from federation.services import neuron_create


class Command(BaseCommand):
    help = "Create a neuron (site) and print its keys as one JSON object. The secret is shown only once."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="neuronId: lowercase letters, digits and hyphens")
        parser.add_argument("--name", required=True)

    def handle(self, *args, slug: str, name: str, **options):
        try:
            creds = neuron_create(slug=slug, name=name)
        except ApplicationError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(
            json.dumps(
                {
                    "neuronId": creds.neuron.slug,
                    "publishableKey": creds.neuron.publishable_key,
                    "secretKey": creds.secret_key,
                }
            )
        )
