"""The audit models leave ``tenants`` for ``audit`` (state only: their tables stay as they are)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0009_audit_tallies"),
        ("audit", "0001_initial"),
        ("lifecycle", "0003_failed_verification_moves_to_audit"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="AuditTally"),
                migrations.DeleteModel(name="AuditTallyMark"),
                migrations.DeleteModel(name="LifecycleEvent"),
            ],
            database_operations=[],
        ),
    ]
