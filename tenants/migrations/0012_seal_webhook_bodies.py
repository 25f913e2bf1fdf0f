"""Seal the bodies kept in clear and mark every earlier delivery done: a migration of its own,
because PostgreSQL refuses to alter a table in the transaction that updated its rows."""

import json

from django.db import migrations, models

# Frozen here (not imported from tenants.deliveries): what a sealed body is bound to.
BODY_BINDING = "webhook-body\x00"


def seal_stored_bodies(apps, schema_editor):
    """Deliveries stored before processing existed were signalled when they arrived: done. Bodies
    kept in clear (TENANT_STORE_WEBHOOK_BODIES on) are encrypted like new ones."""
    from tenants.fields import get_secret_box  # the path migrations import it from

    Delivery = apps.get_model("tenants", "WebhookDelivery")
    Delivery.objects.update(finished_at=models.F("received_at"))
    rows = Delivery.objects.filter(body__isnull=False).select_related("installation")
    if not rows.exists():
        return
    box = get_secret_box()
    for row in rows.iterator(chunk_size=500):
        row.body_sealed = box.encrypt(json.dumps(row.body), BODY_BINDING + row.installation.client_key)
        row.save(update_fields=["body_sealed"])


def unseal_stored_bodies(apps, schema_editor):
    """Back to bodies in clear, for every body still stored."""
    from tenants.fields import get_secret_box

    Delivery = apps.get_model("tenants", "WebhookDelivery")
    rows = Delivery.objects.exclude(body_sealed="").select_related("installation")
    if not rows.exists():
        return
    box = get_secret_box()
    for row in rows.iterator(chunk_size=500):
        row.body = json.loads(box.decrypt(row.body_sealed, BODY_BINDING + row.installation.client_key))
        row.save(update_fields=["body"])


class Migration(migrations.Migration):
    dependencies = [("tenants", "0011_webhook_delivery_processing")]

    operations = [migrations.RunPython(seal_stored_bodies, unseal_stored_bodies, elidable=True)]
