"""Hours not yet covered by a daily rollup now hold every dimension (breakdowns included).

Such hours built before hold the metrics dimensions only, so the hourly watermark
goes back to the daily one: until the next rollup run rebuilds them with every
dimension, those hours are read raw (exact, only slower).
"""

from django.db import migrations


def rewind(apps, schema_editor):
    watermarks = apps.get_model("analytics", "RollupWatermark")
    hourly_rollups = apps.get_model("analytics", "HourlyRollup")
    periods = apps.get_model("analytics", "RollupPeriod")
    marks = {m.granularity: m for m in watermarks.objects.all()}
    hourly, daily = marks.get("hour"), marks.get("day")
    if hourly is None or daily is None or hourly.closed_through <= daily.closed_through:
        return
    hourly_rollups.objects.filter(period_start__gte=daily.closed_through).delete()
    periods.objects.filter(granularity="hour", period_start__gte=daily.closed_through).delete()
    hourly.closed_through = daily.closed_through
    hourly.save(update_fields=["closed_through"])


class Migration(migrations.Migration):
    dependencies = [("analytics", "0003_consented_sessions_index")]

    operations = [migrations.RunPython(rewind, migrations.RunPython.noop)]
