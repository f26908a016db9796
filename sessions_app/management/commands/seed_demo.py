from __future__ import annotations

import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from federation.models import Neuron
from federation.services import neuron_create
from personalization.demo import demo_personalization_generate
from sessions_app.demo import demo_data_generate

DEMO_SLUG = "demo"


class Command(BaseCommand):
    help = "Create the demo site, a staff user and realistic demo data (idempotent). Not for production."

    def add_arguments(self, parser):
        parser.add_argument("--sessions", type=int, default=3000)
        parser.add_argument("--days", type=int, default=30)
        parser.add_argument("--reset", action="store_true", help="Delete the demo site's data and generate again.")

    def handle(self, *args, sessions: int, days: int, reset: bool, **options):
        if settings.PRODUCTION:
            raise CommandError("seed_demo refuses to run with DJANGO_ENV=production.")
        if sessions < 1 or days < 1:
            raise CommandError("--sessions and --days must be positive.")

        neuron = Neuron.objects.filter(slug=DEMO_SLUG).first()
        secret = None
        if neuron is None:
            creds = neuron_create(slug=DEMO_SLUG, name="Demo shop")
            neuron, secret = creds.neuron, creds.secret_key
        elif reset:
            neuron.sessions.all().delete()
            neuron.profiles.all().delete()
            neuron.anonymous_counts.all().delete()

        username = os.environ.get("DEMO_ADMIN_USERNAME", "admin")
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "admin")
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        if user is None:
            user_model.objects.create_superuser(username, f"{username}@example.com", password)

        if neuron.sessions.exists():
            self.stdout.write("Demo data already present (use --reset to generate it again).")
        else:
            with tqdm(total=sessions, desc="demo sessions", unit="session") as bar:
                summary = demo_data_generate(neuron=neuron, sessions=sessions, days=days, progress=bar.update)
            self.stdout.write(
                f"Generated {summary.sessions} sessions, {summary.events} events, "
                f"{summary.anonymous_page_views} anonymously counted page views, {summary.profiles} profiles."
            )
            personal = demo_personalization_generate(neuron=neuron)
            self.stdout.write(
                f"Personalization: {personal.vectors} interest vectors, {len(personal.segments)} segments, "
                f"{personal.archetypes} archetypes, a `hero` content slot."
            )

        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS("Demo site ready"))
        self.stdout.write(f"  neuronId:        {neuron.slug}")
        self.stdout.write(f"  publishable key: {neuron.publishable_key}")
        if secret:
            self.stdout.write(f"  secret key:      {secret}   (shown once)")
        self.stdout.write(f"  staff login:     {username} / {password}   at http://127.0.0.1:8000/admin/")
        self.stdout.write("  API docs:        http://127.0.0.1:8000/api/docs/")
