import getpass

from django.core.management.base import BaseCommand
from tqdm import tqdm

from privacy.retention import retention_apply, retention_pending


class Command(BaseCommand):
    help = "Apply the retention policies now (the daily job does the same). --dry-run only counts."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")
        parser.add_argument("--batch-size", type=int, default=None)

    def handle(self, *args, **options):
        dry_run = options["dry_run"]
        total = sum(retention_pending().values())
        with tqdm(total=total, unit="rows", disable=options["verbosity"] == 0, file=self.stderr) as bar:
            result = retention_apply(
                dry_run=dry_run,
                batch_size=options["batch_size"],
                actor=f"cli:{getpass.getuser()}",
                progress=lambda data_type, n: (bar.set_description(data_type), bar.update(n)),
            )
        verb = "would delete" if dry_run else "deleted"
        for data_type, n in sorted(result.purged.items()):
            self.stdout.write(f"{data_type}: {verb} {n} (older than {result.cutoffs[data_type]})")
