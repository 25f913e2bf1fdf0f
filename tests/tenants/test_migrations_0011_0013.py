"""tenants/migrations/0011 to 0013 (deliveries processed by tasks) on a database holding deliveries."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("tenants", "0010_audit_models_move_to_audit")]
AFTER = [("tenants", "0013_remove_webhookdelivery_body")]


@pytest.mark.django_db(transaction=True)
def test_stored_bodies_are_sealed_forward_and_restored_backward():
    from tenants import deliveries

    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    tenant = old.get_model("tenants", "Installation").objects.create(
        client_key="mig-1", base_url="https://mig-1.atlassian.net"
    )
    Delivery = old.get_model("tenants", "WebhookDelivery")
    Delivery.objects.create(
        installation=tenant, event="e", identifier="with-body", body={"issue": {"key": "M-1"}}
    )
    Delivery.objects.create(installation=tenant, event="e", identifier="without-body")
    try:
        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
        # The model as of 0013 (later migrations add columns this database does not have yet).
        WebhookDelivery = (
            MigrationExecutor(connection)
            .loader.project_state(AFTER)
            .apps.get_model("tenants", "WebhookDelivery")
        )
        rows = {row.identifier: row for row in WebhookDelivery.objects.select_related("installation")}
        assert {row.state for row in rows.values()} == {"done"}  # signalled when they arrived
        assert all(row.finished_at == row.received_at for row in rows.values())
        assert "M-1" not in rows["with-body"].body_sealed
        assert deliveries.open_body(rows["with-body"]) == {"issue": {"key": "M-1"}}
        assert rows["without-body"].body_sealed == ""
        executor = MigrationExecutor(connection)
        executor.migrate(BEFORE)
        back = (
            MigrationExecutor(connection)
            .loader.project_state(BEFORE)
            .apps.get_model("tenants", "WebhookDelivery")
        )
        assert back.objects.get(identifier="with-body").body == {"issue": {"key": "M-1"}}
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
