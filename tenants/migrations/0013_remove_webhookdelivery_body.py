"""The clear-text body column goes: bodies live sealed in body_sealed (0012 moved them)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("tenants", "0012_seal_webhook_bodies")]

    operations = [migrations.RemoveField(model_name="webhookdelivery", name="body")]
