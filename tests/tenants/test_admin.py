"""tenants/admin.py: installations list and page, masked secret, audited operator actions."""

import pytest
from django.contrib.auth.models import User

from audit.models import LifecycleEvent
from tenants import services
from tenants.models import Installation, WebhookDelivery

pytestmark = pytest.mark.django_db
SECRET = "admin-page-secret-0123456789abcdef"


@pytest.fixture
def installed(make_body):
    body = make_body(clientKey="tenant-1", sharedSecret=SECRET, serviceEntitlementNumber="SEN-777")
    installation = services.install(body).installation
    LifecycleEvent.objects.record(  # as the middleware records a verified install
        event_type="installed", outcome="accepted", client_key="tenant-1", key_id="kid-1", verified=True
    )
    WebhookDelivery.objects.create(installation=installation, event="jira:issue_created", identifier="wh-1")
    return installation


def test_changelist_shows_filters_search_and_last_outcome(client, operator, installed):
    response = client.get("/admin/tenants/installation/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "tenant-1" in html and "https://example-site.atlassian.net" in html
    assert "accepted" in html  # last event outcome
    for name in ("state", "enabled", "product_type", "suspended"):
        assert f"?{name}" in html or f"{name}__exact" in html
    assert client.get("/admin/tenants/installation/?q=SEN-777").content.decode().count("tenant-1") >= 1
    assert "tenant-1" not in client.get("/admin/tenants/installation/?q=nothing-like-it").content.decode()
    assert SECRET not in html


def test_change_page_masks_the_secret_and_shows_history(client, operator, installed):
    html = client.get(f"/admin/tenants/installation/{installed.pk}/change/").content.decode()
    assert "set, encrypted, last rotated" in html
    assert SECRET not in html
    assert installed.shared_secret.ciphertext not in html
    assert "recent-events" in html and "kid-1" in html
    assert "recent-deliveries" in html and "wh-1" in html


def test_no_add_and_no_plain_delete(client, operator, installed):
    assert client.get("/admin/tenants/installation/add/").status_code == 403
    assert client.get(f"/admin/tenants/installation/{installed.pk}/delete/").status_code == 403


def test_notes_are_editable_and_audited_but_protocol_fields_are_not(client, operator, installed):
    url = f"/admin/tenants/installation/{installed.pk}/change/"
    response = client.post(
        url, {"notes": "Customer asked for a trial extension.", "base_url": "https://evil.example"}
    )
    assert response.status_code == 302
    row = Installation.objects.get()
    assert row.notes == "Customer asked for a trial extension."
    assert row.base_url == "https://example-site.atlassian.net"
    event = LifecycleEvent.objects.get(event_type="admin_notes")
    assert event.actor == "operator"


def test_suspend_and_resume_actions_are_recorded(client, operator, installed):
    changelist = "/admin/tenants/installation/"
    client.post(changelist, {"action": "suspend", "_selected_action": [installed.pk]})
    assert Installation.objects.get().suspended is True
    client.post(changelist, {"action": "resume", "_selected_action": [installed.pk]})
    assert Installation.objects.get().suspended is False
    assert list(
        LifecycleEvent.objects.filter(event_type__startswith="admin_")
        .order_by("id")
        .values_list("event_type", "actor")
    ) == [("admin_suspend", "operator"), ("admin_resume", "operator")]


def test_forget_asks_for_confirmation_and_keeps_history(client, operator, installed, make_body):
    other = services.install(make_body(clientKey="still-installed")).installation
    services.uninstall("tenant-1")
    changelist = "/admin/tenants/installation/"
    selected = [installed.pk, other.pk]
    page = client.post(changelist, {"action": "forget_uninstalled", "_selected_action": selected})
    assert page.status_code == 200
    assert "Yes, forget them" in page.content.decode() and "still installed" in page.content.decode()
    assert Installation.objects.count() == 2
    client.post(
        changelist, {"action": "forget_uninstalled", "_selected_action": selected, "confirmed": "yes"}
    )
    assert list(Installation.objects.values_list("client_key", flat=True)) == ["still-installed"]
    assert LifecycleEvent.objects.filter(client_key="tenant-1", event_type="installed").exists()
    assert LifecycleEvent.objects.get(event_type="admin_forget").actor == "operator"


def test_staff_without_manage_permission_cannot_act(client, installed):
    from django.contrib.auth.models import Permission

    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_installation"))
    client.force_login(user)
    response = client.get("/admin/tenants/installation/")
    assert response.status_code == 200
    assert "Suspend selected" not in response.content.decode()
    client.post("/admin/tenants/installation/", {"action": "suspend", "_selected_action": [installed.pk]})
    assert Installation.objects.get().suspended is False


def test_webhook_deliveries_are_listed_read_only_without_bodies(client, operator, installed):
    html = client.get("/admin/tenants/webhookdelivery/").content.decode()
    assert "wh-1" in html
    delivery = WebhookDelivery.objects.get()
    page = client.get(f"/admin/tenants/webhookdelivery/{delivery.pk}/change/")
    assert page.status_code == 200
    assert 'name="body"' not in page.content.decode()


def _failed_delivery(installation, identifier="wh-failed"):
    from tenants import deliveries

    return WebhookDelivery.objects.create(
        installation=installation,
        event="jira:issue_updated",
        identifier=identifier,
        state="failed",
        attempts=8,
        error_type="yourapp.receivers.Broken",
        body_sealed=deliveries.seal_body(installation.client_key, '{"secret": "users data"}'),
    )


def test_deliveries_filter_by_state_and_a_failed_one_is_retried_now_and_recorded(
    client, operator, installed, run_tasks
):
    failed = _failed_delivery(installed)
    html = client.get("/admin/tenants/webhookdelivery/?state__exact=failed").content.decode()
    assert "wh-failed" in html and "wh-1" not in html and "yourapp.receivers.Broken" in html
    assert "users data" not in html and failed.body_sealed not in html
    detail = client.get(f"/admin/tenants/webhookdelivery/{failed.pk}/change/").content.decode()
    assert failed.body_sealed not in detail and "users data" not in detail
    response = client.post(
        "/admin/tenants/webhookdelivery/",
        {
            "action": "retry_now",
            "_selected_action": [failed.pk, WebhookDelivery.objects.get(identifier="wh-1").pk],
        },
        follow=True,
    )
    assert "Queued 1 delivery(ies) for processing now; 1 skipped (not failed" in response.content.decode()
    failed.refresh_from_db()
    assert (failed.state, failed.attempts) == ("pending", 7)  # one more attempt: the 8th, the last
    [row] = LifecycleEvent.objects.filter(event_type="admin_retry_delivery")
    assert (row.actor, row.client_key) == ("operator", "tenant-1")
    run_tasks()
    failed.refresh_from_db()
    assert failed.state == "done"


def test_retry_now_needs_its_permission(client, installed):
    from django.contrib.auth.models import Permission

    failed = _failed_delivery(installed)
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_webhookdelivery"))
    client.force_login(user)
    assert "Retry selected" not in client.get("/admin/tenants/webhookdelivery/").content.decode()
    client.post("/admin/tenants/webhookdelivery/", {"action": "retry_now", "_selected_action": [failed.pk]})
    failed.refresh_from_db()
    assert failed.state == "failed"
    user.user_permissions.add(Permission.objects.get(codename="retry_webhookdelivery"))
    user = User.objects.get(pk=user.pk)  # permissions are cached per user object
    client.force_login(user)
    assert "Retry selected" in client.get("/admin/tenants/webhookdelivery/").content.decode()


def test_the_admin_index_shows_the_webhook_backlog_and_failures(client, operator, installed):
    _failed_delivery(installed)
    html = client.get("/admin/").content.decode()
    assert 'id="webhook-backlog"' in html
    assert '<span id="webhook-failed">1</span> failed' in html
    assert "1 pending" in html  # wh-1: stored, not processed


# --- Unverified rows are claims, never a tenant's history (issue 12, item 3) -------------------


def test_forged_rows_under_a_real_client_key_never_rewrite_its_history(
    client, operator, lifecycle_call, make_body
):
    genuine = lifecycle_call(body=make_body(clientKey="real-tenant"))
    assert genuine.status_code == 204
    for _ in range(25):  # anonymous: no JWT, the real tenant's clientKey in the body
        forged = client.post(
            "/lifecycle/installed",
            data='{"clientKey": "real-tenant", "baseUrl": "https://x.atlassian.net", '
            '"key": "django-connect-app", "eventType": "installed", "sharedSecret": "evil"}',
            content_type="application/json",
        )
        assert forged.status_code == 401
    [claims] = LifecycleEvent.objects.filter(client_key="real-tenant", verified=False)  # folded
    assert claims.count == 25
    assert LifecycleEvent.objects.get(client_key="real-tenant", verified=True).outcome == "accepted"

    listing = client.get("/admin/tenants/installation/").content.decode()
    row = listing.split("real-tenant</a>")[1].split("</tr>")[0]
    assert "accepted" in row and "rejected" not in row  # the last event is the genuine install
    installation = Installation.objects.get(client_key="real-tenant")
    page = client.get(f"/admin/tenants/installation/{installation.pk}/change/").content.decode()
    history = page.split("recent-events")[1].split("</table>")[0]
    assert history.count("<tr>") == 2  # the header and the genuine install only
    failed = client.get("/admin/audit/failedverification/").content.decode()
    assert failed.count('real-tenant <span class="claimed"') == 1  # one claim, 25 times over
    assert '<td class="field-count">25</td>' in failed


def test_rows_backed_by_a_verified_token_are_verified(tenant, tenant_call, make_body):
    from tests.conftest import TENANT_KEY

    tenant_call("/lifecycle/enabled", make_body("enabled", clientKey=TENANT_KEY))  # accepted
    tenant_call("/lifecycle/enabled", make_body("enabled", clientKey=TENANT_KEY), secret="w" * 40)  # forged
    tenant_call(
        "/lifecycle/enabled", make_body("enabled", clientKey="someone-else")
    )  # real token, other body
    rows = list(
        LifecycleEvent.objects.order_by("id").values_list("outcome", "reason", "client_key", "verified")
    )
    assert rows == [
        ("accepted", "", TENANT_KEY, True),
        ("rejected", "bad_signature", TENANT_KEY, False),
        ("rejected", "issuer_mismatch", "someone-else", False),
    ]


def test_a_failed_delivery_can_be_discarded_dropping_its_body_and_recorded(client, operator, installed):
    failed = _failed_delivery(installed)
    done = WebhookDelivery.objects.get(identifier="wh-1")
    response = client.post(
        "/admin/tenants/webhookdelivery/",
        {"action": "discard", "_selected_action": [failed.pk, done.pk]},
        follow=True,
    )
    assert "Discarded 1 failed delivery(ies); 1 skipped (not failed)." in response.content.decode()
    failed.refresh_from_db()
    assert (failed.state, failed.body_sealed) == ("discarded", "")
    [row] = LifecycleEvent.objects.filter(event_type="admin_discard_delivery")
    assert row.actor == "operator" and "its body was dropped" in row.detail
    assert WebhookDelivery.objects.get(identifier="wh-1").state == done.state  # untouched


def test_forge_installations_and_their_events_are_shown_to_operators(client, operator, installed):
    """A Forge-only installation, one linked to a Connect tenant, and a failed Forge event that an
    operator retries: listed, read-only, the body never shown, the action in its history."""
    import json

    from tenants import deliveries, forge

    linked = forge.observe(forge.FitSubject("ari:cloud:ecosystem::installation/aaa", "c1")).installation
    linked.tenant = installed
    linked.save()
    only = forge.observe(forge.FitSubject("ari:cloud:ecosystem::installation/bbb", "c2")).installation
    result = forge.record_event(
        only, event="avi:jira:created:issue", body={"x": 1}, raw_body='{"x": 1}', window=900
    )
    WebhookDelivery.objects.filter(pk=result.delivery.pk).update(state="failed", attempts=8)
    html = client.get("/admin/tenants/forgeinstallation/").content.decode()
    assert "ari:cloud:ecosystem::installation/aaa" in html and "tenant-1" in html
    assert "ari:cloud:ecosystem::installation/bbb" in html
    forge.apply_lifecycle(only, "avi:forge:installed:app", 1796035173)
    page = client.get(f"/admin/tenants/forgeinstallation/{only.pk}/change/").content.decode()
    assert "2026-11-30 " in page and "1796035173" not in page  # a time, not epoch seconds
    assert client.get("/admin/tenants/forgeinstallation/add/").status_code == 403
    listing = client.get("/admin/tenants/webhookdelivery/?q=installation/bbb").content.decode()
    assert "Forge ari:cloud:ecosystem::installation/bbb" in listing and "wh-1" not in listing
    response = client.post(
        "/admin/tenants/webhookdelivery/",
        {"action": "retry_now", "_selected_action": [result.delivery.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert WebhookDelivery.objects.get(pk=result.delivery.pk).state == "pending"
    row = LifecycleEvent.objects.get(event_type="admin_retry_delivery")
    assert row.client_key == "ari:cloud:ecosystem::installation/bbb"
    assert deliveries.open_body(WebhookDelivery.objects.get(pk=result.delivery.pk)) == json.loads('{"x": 1}')
