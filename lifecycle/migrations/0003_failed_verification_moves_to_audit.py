"""The failed-verifications proxy moves to ``audit`` (its state only: a proxy has no table)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("lifecycle", "0002_failed_verification_proxy"),
        ("audit", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="FailedVerification")],
            database_operations=[],
        ),
    ]
