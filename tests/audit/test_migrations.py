"""audit/migrations/0001: the audit models move from tenants without losing a row or a permission."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("tenants", "0009_audit_tallies"), ("lifecycle", "0002_failed_verification_proxy"), ("audit", None)]
STATE = [
    *BEFORE[:2],
    ("contenttypes", "0002_remove_content_type_name"),
    ("auth", "0012_alter_user_first_name_max_length"),
]


@pytest.mark.django_db(transaction=True)
def test_rows_and_operators_permissions_survive_the_move():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(BEFORE)
    old = executor.loader.project_state(STATE).apps
    content_type = old.get_model("contenttypes", "ContentType")
    permission = old.get_model("auth", "Permission")
    user = old.get_model("auth", "User")
    event_type = content_type.objects.get_or_create(app_label="tenants", model="lifecycleevent")[0]
    view = permission.objects.get_or_create(
        content_type=event_type, codename="view_lifecycleevent", defaults={"name": "Can view lifecycle event"}
    )[0]
    operator = user.objects.create(username="op", is_staff=True)
    operator.user_permissions.add(view)
    old.get_model("tenants", "LifecycleEvent").objects.create(
        event_type="installed", outcome="accepted", client_key="kept"
    )

    executor = MigrationExecutor(connection)
    executor.migrate(latest)

    from django.contrib.auth.models import User

    from audit.models import LifecycleEvent

    assert list(LifecycleEvent.objects.values_list("client_key", flat=True)) == ["kept"]
    assert User.objects.get(username="op").has_perm("audit.view_lifecycleevent")
