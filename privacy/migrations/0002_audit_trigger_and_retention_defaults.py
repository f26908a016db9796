"""The audit log's append-only trigger (PostgreSQL) and the default retention policies."""

from django.db import migrations

TRIGGER_SQL = """
CREATE OR REPLACE FUNCTION privacy_audit_log_append_only() RETURNS trigger AS $$
BEGIN
    -- privacy.audit.audit_purge, the documented retention path, sets this for its own transaction only.
    IF TG_OP = 'DELETE' AND current_setting('privacy.audit_purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'privacy_audit_log is append-only: % rejected', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS privacy_audit_log_no_update ON privacy_audit_log;
CREATE TRIGGER privacy_audit_log_no_update
    BEFORE UPDATE OR DELETE ON privacy_audit_log
    FOR EACH ROW EXECUTE FUNCTION privacy_audit_log_append_only();

-- TRUNCATE is left to the table owner (test databases are flushed with it); production
-- should run the application under a role that does not own its tables.
"""

DROP_SQL = """
DROP TRIGGER IF EXISTS privacy_audit_log_no_update ON privacy_audit_log;
DROP FUNCTION IF EXISTS privacy_audit_log_append_only();
"""

DEFAULT_DAYS = {
    "events": 395,
    "sessions": 395,
    "fingerprints": 180,
    "consent_records": 1095,
    "dsar_records": 1095,
    "audit_log": 2190,
}


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRIGGER_SQL, params=None)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_SQL, params=None)


def create_policies(apps, schema_editor):
    RetentionPolicy = apps.get_model("privacy", "RetentionPolicy")
    for data_type, days in DEFAULT_DAYS.items():
        RetentionPolicy.objects.get_or_create(data_type=data_type, defaults={"duration_days": days})


class Migration(migrations.Migration):
    dependencies = [("privacy", "0001_initial")]

    operations = [
        migrations.RunPython(create_trigger, drop_trigger),
        migrations.RunPython(create_policies, migrations.RunPython.noop),
    ]
