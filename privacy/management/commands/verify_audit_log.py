from django.core.management.base import BaseCommand, CommandError

from privacy.audit import audit_verify


class Command(BaseCommand):
    help = "Verify the audit log's hash chain; name every edited, deleted or reordered entry. Exit 1 if broken."

    def handle(self, *args, **options):
        report = audit_verify()
        if report.ok:
            span = f"#{report.first_seq}..#{report.last_seq}" if report.checked else "empty"
            self.stdout.write(self.style.SUCCESS(f"audit log intact: {report.checked} entries ({span})"))
            return
        for problem in report.problems:
            self.stderr.write(problem)
        raise CommandError(f"audit log chain broken: {len(report.problems)} problem(s) in {report.checked} entries")
