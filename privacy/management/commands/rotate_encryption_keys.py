import getpass

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from privacy.keys import encryption_keys_rotate


class Command(BaseCommand):
    help = "Re-encrypt every encrypted identifier under the newest FIELD_ENCRYPTION_KEYS key."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=1000)

    def handle(self, *args, **options):
        with tqdm(unit="rows", disable=options["verbosity"] == 0, file=self.stderr) as bar:
            report = encryption_keys_rotate(
                actor=f"cli:{getpass.getuser()}",
                batch_size=options["batch_size"],
                progress=lambda label, n: (bar.set_description(label), bar.update(n)),
            )
        failed = 0
        for label, counts in report.items():
            self.stdout.write(f"{label}: {counts['rotated']} rotated, {counts['failed']} undecryptable")
            failed += counts["failed"]
        if failed:
            raise CommandError(f"{failed} value(s) could not be decrypted with the configured keys")
