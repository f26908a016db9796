"""Session sequences list their actions. Existing sequences are dropped with their watermark:
the next rollup run packs them again, and until then those sessions are read raw."""

from django.db import migrations, models


def forget_sequences(apps, schema_editor):
    apps.get_model("analytics", "SessionSequence").objects.all().delete()
    apps.get_model("analytics", "RollupWatermark").objects.filter(granularity="session").delete()


class Migration(migrations.Migration):
    dependencies = [("analytics", "0004_breakdowns_in_open_day_hours")]

    operations = [
        migrations.AddField(
            model_name="sessionsequence",
            name="actions",
            field=models.TextField(blank=True, default=""),
        ),
        migrations.RunPython(forget_sequences, migrations.RunPython.noop),
    ]
