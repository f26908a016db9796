from django.db import migrations
from django.db.models import F


def mark_existing_attributions(apps, schema_editor):
    """Sessions already on a user's profile count as signed in: which of them the user really signed
    in on was never recorded, and a later second user on the device must not take them away."""
    UserSession = apps.get_model("sessions_app", "UserSession")
    UserSession.objects.filter(profile__user_id_hash__isnull=False, identified_at__isnull=True).update(
        identified_at=F("started_at")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0003_session_identified_at"),
    ]

    operations = [
        migrations.RunPython(mark_existing_attributions, migrations.RunPython.noop),
    ]
