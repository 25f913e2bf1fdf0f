"""The audit models move here from ``tenants`` (and the failed-verifications proxy from
``lifecycle``) without touching a table: they keep their ``tenants_*`` names, and the content
types move with them, so the permissions operators hold (view lifecycle event ...) stay theirs.
"""

import django.utils.timezone
from django.db import migrations, models

MOVED = (
    ("tenants", "lifecycleevent"),
    ("tenants", "audittally"),
    ("tenants", "audittallymark"),
    ("lifecycle", "failedverification"),
)


def move_content_types(apps, schema_editor, forward=True):
    content_type = apps.get_model("contenttypes", "ContentType")
    rows = content_type.objects.using(schema_editor.connection.alias)
    for old_app, model in MOVED:
        source, target = (old_app, "audit") if forward else ("audit", old_app)
        if rows.filter(app_label=target, model=model).exists():
            continue  # already there (created by a run without this migration): keep it
        rows.filter(app_label=source, model=model).update(app_label=target)


def move_content_types_back(apps, schema_editor):
    move_content_types(apps, schema_editor, forward=False)


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("tenants", "0009_audit_tallies"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AuditTallyMark",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("tallied_until", models.DateTimeField()),
                    ],
                    options={
                        "db_table": "tenants_audittallymark",
                    },
                ),
                migrations.CreateModel(
                    name="AuditTally",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("bucket", models.DateTimeField()),
                        ("kind", models.CharField(max_length=16)),
                        ("outcome", models.CharField(max_length=16)),
                        ("reason", models.CharField(blank=True, max_length=64)),
                        ("requests", models.BigIntegerField()),
                    ],
                    options={
                        "db_table": "tenants_audittally",
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("bucket", "kind", "outcome", "reason"), name="audit_tally_unique"
                            )
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="LifecycleEvent",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("client_key", models.CharField(blank=True, db_index=True, max_length=255)),
                        ("event_type", models.CharField(max_length=32)),
                        (
                            "outcome",
                            models.CharField(
                                choices=[
                                    ("accepted", "accepted"),
                                    ("rejected", "rejected"),
                                    ("ignored", "ignored"),
                                ],
                                max_length=16,
                            ),
                        ),
                        ("reason", models.CharField(blank=True, db_index=True, max_length=64)),
                        ("detail", models.TextField(blank=True)),
                        ("key_id", models.CharField(blank=True, db_index=True, max_length=256)),
                        ("token_fingerprint", models.CharField(blank=True, db_index=True, max_length=16)),
                        ("remote_addr", models.GenericIPAddressField(blank=True, null=True)),
                        ("path", models.CharField(blank=True, max_length=512)),
                        ("actor", models.CharField(blank=True, max_length=150)),
                        ("body", models.JSONField(blank=True, null=True)),
                        ("verified", models.BooleanField(default=False)),
                        ("count", models.PositiveIntegerField(default=1)),
                        ("last_seen_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "created_at",
                            models.DateTimeField(
                                db_index=True, default=django.utils.timezone.now, editable=False
                            ),
                        ),
                    ],
                    options={
                        "db_table": "tenants_lifecycleevent",
                        "ordering": ["-created_at", "-id"],
                        "indexes": [
                            models.Index(fields=["outcome", "created_at"], name="event_outcome_time_idx"),
                            models.Index(
                                fields=["client_key", "verified", "-created_at"],
                                name="event_tenant_history_idx",
                            ),
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="FailedVerification",
                    fields=[],
                    options={
                        "verbose_name": "failed verification",
                        "ordering": ["-created_at", "-id"],
                        "proxy": True,
                        "indexes": [],
                        "constraints": [],
                    },
                    bases=("audit.lifecycleevent",),
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_types, move_content_types_back),
    ]
