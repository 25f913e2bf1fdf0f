"""lifecycle/views.py: health probe (database up and down) and declared routes."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_healthz_is_ok_when_the_database_answers(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.parametrize(
    "database_url",
    ["postgres://postgres@127.0.0.1:1/nowhere", "sqlite:////nonexistent-directory/for/sure/db.sqlite3"],
)
def test_healthz_is_503_not_a_traceback_when_the_database_is_down(database_url):
    script = (
        "import django; django.setup();"
        "from django.test import Client;"
        "r = Client().get('/healthz');"
        "import json; print(json.dumps([r.status_code, r.json(), r.get('Retry-After')]))"
    )
    environment = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    status, body, retry_after = json.loads(result.stdout.strip().splitlines()[-1])
    assert status == 503
    assert body == {"status": "unavailable", "database": "unreachable"}
    assert retry_after == "10"
    assert "Traceback" not in result.stderr


def test_admin_login_page_is_served(client, db):
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert b"Connect app administration" in response.content


# --- installed / uninstalled ---------------------------------------------------------------


@pytest.mark.django_db
def test_signed_install_creates_the_tenant_and_an_accepted_audit_row(lifecycle_call, make_body):
    from audit.models import LifecycleEvent
    from lifecycle.verification import token_fingerprint
    from tenants.models import Installation
    from tests.conftest import KID

    body = make_body(sharedSecret="fresh-secret")
    response = lifecycle_call(body=body)
    assert response.status_code == 204
    assert response.content == b""
    row = Installation.objects.get(client_key=body["clientKey"])
    assert row.reveal_shared_secret() == "fresh-secret"
    event = LifecycleEvent.objects.get()
    assert (event.outcome, event.event_type, event.key_id) == ("accepted", "installed", KID)
    assert event.token_fingerprint == token_fingerprint(response.token)
    assert event.body["sharedSecret"] == "********"
    assert event.detail == "New tenant installed."


@pytest.mark.django_db
def test_reinstall_replaces_the_secret_and_records_a_site_rename(lifecycle_call, make_body):
    from audit.models import LifecycleEvent
    from tenants.models import Installation

    body = make_body(sharedSecret="first-secret")
    assert lifecycle_call(body=body).status_code == 204
    renamed = {**body, "sharedSecret": "second-secret", "baseUrl": "https://renamed.atlassian.net"}
    assert lifecycle_call(body=renamed).status_code == 204
    row = Installation.objects.get()
    assert row.reveal_shared_secret() == "second-secret"
    assert row.base_url == "https://renamed.atlassian.net"
    latest = LifecycleEvent.objects.order_by("-id").first()
    assert "Site renamed" in latest.detail and "renamed.atlassian.net" in latest.detail


@pytest.mark.django_db
def test_uninstall_erases_the_secret_and_is_idempotent(lifecycle_call, make_body):
    from audit.models import LifecycleEvent
    from tenants.models import Installation

    body = make_body()
    lifecycle_call(body=body)
    gone = make_body("uninstalled", clientKey=body["clientKey"])
    assert lifecycle_call("uninstalled", body=gone).status_code == 204
    assert lifecycle_call("uninstalled", body=gone).status_code == 204
    row = Installation.objects.get()
    assert row.state == "uninstalled" and row.shared_secret is None
    assert list(LifecycleEvent.objects.order_by("id").values_list("event_type", "outcome")) == [
        ("installed", "accepted"),
        ("uninstalled", "accepted"),
        ("uninstalled", "accepted"),
    ]


@pytest.mark.django_db
def test_uninstall_of_an_unknown_tenant_is_a_recorded_no_op(lifecycle_call, make_body):
    from audit.models import LifecycleEvent
    from tenants.models import Installation

    response = lifecycle_call("uninstalled", body=make_body("uninstalled"))
    assert response.status_code == 204
    assert not Installation.objects.exists()
    event = LifecycleEvent.objects.get()
    assert (event.outcome, event.detail) == ("ignored", "No such tenant: nothing to uninstall.")


@pytest.mark.django_db
def test_a_cached_key_keeps_installs_working_with_the_key_servers_down(lifecycle_call, key_server, make_body):
    from lifecycle.keys import provider
    from tests.conftest import KID

    assert lifecycle_call(body=make_body()).status_code == 204
    key_server.behaviour = "error"
    provider.clear()  # a fresh process: the key comes from the database
    assert lifecycle_call(body=make_body()).status_code == 204
    assert key_server.requests == ["/" + KID]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_parallel_installs_of_one_new_tenant_give_one_row_and_one_fetch(
    key_server, rsa_key, make_body, settings
):
    import threading

    from django.db import connection
    from django.test import Client

    from connect_testkit import sign_install
    from lifecycle.keys import provider
    from tenants.models import Installation
    from tests.conftest import KID

    body = make_body(clientKey="parallel-tenant")
    tokens = [
        sign_install(
            rsa_key,
            kid=KID,
            client_key="parallel-tenant",
            audience=settings.CONNECT["BASE_URL"],
            url="/lifecycle/installed",
            overrides={"jti": str(i)},
        )
        for i in range(20)
    ]
    barrier = threading.Barrier(20)
    statuses = []

    def install(token):
        try:
            barrier.wait(timeout=10)
            response = Client().post(
                "/lifecycle/installed",
                data=json.dumps(body),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"JWT {token}",
            )
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=install, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert statuses == [204] * 20
    assert Installation.objects.filter(client_key="parallel-tenant").count() == 1
    assert key_server.requests == ["/" + KID]
    assert provider.fetch_count == 1


# --- webhooks ---------------------------------------------------------------------------------

HOOK = "/webhooks/jira:issue_created?issueKey=ABC-1"
ISSUE = {"webhookEvent": "jira:issue_created", "issue": {"key": "ABC-1"}}


@pytest.fixture
def hook_calls(run_tasks):
    """``hook_calls()``: run the queued delivery tasks (the real worker), then return what
    ``webhook_received`` receivers have seen so far."""
    from tenants.models import WebhookDelivery
    from tenants.signals import webhook_received

    calls = []

    def receiver(sender, installation, event, body, delivery, **kwargs):
        calls.append((installation.client_key, event, body, delivery.pk))

    def processed():
        run_tasks()
        return calls

    webhook_received.connect(receiver, sender=WebhookDelivery, weak=False)
    yield processed
    webhook_received.disconnect(receiver, sender=WebhookDelivery)


@pytest.mark.django_db
def test_webhook_is_recorded_and_reaches_app_code_once(
    tenant, tenant_call, hook_calls, django_capture_on_commit_callbacks
):
    from audit.models import LifecycleEvent
    from tenants.models import WebhookDelivery

    headers = {"X-Atlassian-Webhook-Identifier": "delivery-1", "X-Atlassian-Webhook-Retry": "0"}
    with django_capture_on_commit_callbacks(execute=True):
        first = tenant_call(HOOK, ISSUE, headers=headers)
    with django_capture_on_commit_callbacks(execute=True):
        retry = tenant_call(HOOK, ISSUE, headers={**headers, "X-Atlassian-Webhook-Retry": "1"})
    assert (first.status_code, retry.status_code) == (204, 204)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.identifier, delivery.event, delivery.retry_count) == (
        "delivery-1",
        "jira:issue_created",
        0,
    )
    assert delivery.body_size == len(json.dumps(ISSUE))
    # Stored before the 204, encrypted, and not processed yet: the response did not wait for it.
    assert (delivery.state, delivery.attempts) == ("pending", 0)
    assert delivery.body_sealed and "ABC-1" not in delivery.body_sealed
    assert hook_calls() == [(tenant.client_key, "jira:issue_created", ISSUE, delivery.pk)]
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("done", 1)
    assert delivery.body_sealed == ""  # users' data is dropped once processed, unless asked
    assert hook_calls() == [(tenant.client_key, "jira:issue_created", ISSUE, delivery.pk)]  # once
    assert not LifecycleEvent.objects.exists()  # accepted webhooks are deliveries, not audit rows


@pytest.mark.django_db
def test_one_identifier_at_two_event_urls_is_deduplicated_but_recorded_and_logged(
    tenant, tenant_call, hook_calls, caplog, django_capture_on_commit_callbacks
):
    from audit.models import LifecycleEvent
    from tenants.models import WebhookDelivery

    headers = {"X-Atlassian-Webhook-Identifier": "shared-id"}
    with django_capture_on_commit_callbacks(execute=True):
        assert tenant_call(HOOK, ISSUE, headers=headers).status_code == 204
    updated = "/webhooks/jira:issue_updated?issueKey=ABC-1"
    with caplog.at_level(logging.INFO, logger="lifecycle"), django_capture_on_commit_callbacks(execute=True):
        response = tenant_call(updated, {**ISSUE, "webhookEvent": "jira:issue_updated"}, headers=headers)
    assert response.status_code == 204
    delivery = WebhookDelivery.objects.get()  # still deduplicated: one delivery, processed once
    assert delivery.event == "jira:issue_created"
    assert len(hook_calls()) == 1
    row = LifecycleEvent.objects.get()
    assert (row.event_type, row.outcome, row.reason) == ("webhook", "ignored", "webhook_event_mismatch")
    assert row.client_key == tenant.client_key
    assert "'jira:issue_created'" in row.detail and "'jira:issue_updated'" in row.detail
    assert str(delivery.pk) in row.detail
    assert "event mismatch" in caplog.text and "jira:issue_updated" in caplog.text


@pytest.mark.django_db
def test_a_retry_to_the_same_event_url_stays_silent(
    tenant, tenant_call, hook_calls, django_capture_on_commit_callbacks
):
    from audit.models import LifecycleEvent

    headers = {"X-Atlassian-Webhook-Identifier": "retried-id"}
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            assert tenant_call(HOOK, ISSUE, headers=headers).status_code == 204
    assert len(hook_calls()) == 1
    assert not LifecycleEvent.objects.exists()


@pytest.mark.django_db
def test_webhook_body_is_kept_after_processing_only_when_asked(tenant, tenant_call, settings, run_tasks):
    from tenants import deliveries
    from tenants.models import WebhookDelivery

    settings.TENANTS = {**settings.TENANTS, "STORE_WEBHOOK_BODIES": True}
    assert tenant_call(HOOK, ISSUE, headers={"X-Atlassian-Webhook-Identifier": "d-2"}).status_code == 204
    run_tasks()
    delivery = WebhookDelivery.objects.get()
    assert delivery.state == "done" and deliveries.open_body(delivery) == ISSUE


@pytest.mark.django_db
def test_webhooks_without_identifier_are_bound_by_their_token(tenant, tenant_call):
    import time

    from tenants.models import WebhookDelivery

    first = tenant_call(HOOK, ISSUE)
    assert first.status_code == 204
    assert tenant_call(HOOK, ISSUE, token=first.token).status_code == 204  # the same delivery again
    assert WebhookDelivery.objects.count() == 1
    assert tenant_call(HOOK, ISSUE, now=time.time() + 5).status_code == 204  # another token
    assert WebhookDelivery.objects.count() == 2


# --- One webhook token, one delivery (issue 12, item 6) ---------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("second_identifier", "second_body"),
    [("id-1", {"issue": {"key": "EVIL-1"}}), ("", ISSUE), ("", {"other": 1})],
    ids=["same-identifier-other-body", "no-identifier", "no-identifier-other-body"],
)
def test_a_webhook_token_cannot_carry_other_content(
    tenant, tenant_call, hook_calls, second_identifier, second_body, django_capture_on_commit_callbacks
):
    from audit.models import LifecycleEvent
    from tenants.models import WebhookDelivery

    with django_capture_on_commit_callbacks(execute=True):
        first = tenant_call(HOOK, ISSUE, headers={"X-Atlassian-Webhook-Identifier": "id-1"})
    assert first.status_code == 204
    headers = {"X-Atlassian-Webhook-Identifier": second_identifier} if second_identifier else {}
    with django_capture_on_commit_callbacks(execute=True):
        reused = tenant_call(HOOK, second_body, token=first.token, headers=headers)
    assert (reused.status_code, reused.json()["error"]) == (409, "webhook_token_reused")
    assert WebhookDelivery.objects.count() == 1
    assert len(hook_calls()) == 1
    assert LifecycleEvent.objects.get().reason == "webhook_token_reused"


@pytest.mark.django_db
def test_two_deliveries_in_one_second_may_share_a_token(
    tenant, tenant_call, hook_calls, django_capture_on_commit_callbacks
):
    """Connect tokens carry no jti: two webhooks to one URL in one second are signed alike."""
    with django_capture_on_commit_callbacks(execute=True):
        first = tenant_call(HOOK, ISSUE, headers={"X-Atlassian-Webhook-Identifier": "id-1"})
        second = tenant_call(
            HOOK,
            {"issue": {"key": "ABC-1", "changelog": 2}},
            token=first.token,
            headers={"X-Atlassian-Webhook-Identifier": "id-2"},
        )
    assert (first.status_code, second.status_code) == (204, 204)
    assert len(hook_calls()) == 2


@pytest.mark.django_db
def test_the_same_token_and_identifier_is_a_retry(
    tenant, tenant_call, hook_calls, django_capture_on_commit_callbacks
):
    headers = {"X-Atlassian-Webhook-Identifier": "id-1"}
    with django_capture_on_commit_callbacks(execute=True):
        first = tenant_call(HOOK, ISSUE, headers=headers)
        again = tenant_call(
            HOOK, ISSUE, token=first.token, headers={**headers, "X-Atlassian-Webhook-Retry": "1"}
        )
    assert (first.status_code, again.status_code) == (204, 204)
    assert len(hook_calls()) == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "identifier", "error"),
    [
        ("/webhooks/issue%00created", "id-1", "invalid_webhook_event"),
        ("/webhooks/issue%0Acreated", "id-1", "invalid_webhook_event"),
        ("/webhooks/" + "e" * 65, "id-1", "invalid_webhook_event"),
        (HOOK, "x" * 256, "invalid_webhook_identifier"),
        (HOOK, "id\x1b[2J", "invalid_webhook_identifier"),
    ],
    ids=["nul", "newline", "long-event", "long-identifier", "escape-identifier"],
)
def test_bad_event_names_and_identifiers_are_400_and_store_nothing(
    tenant, tenant_call, path, identifier, error
):
    from tenants.models import WebhookDelivery

    response = tenant_call(path, ISSUE, headers={"X-Atlassian-Webhook-Identifier": identifier})
    assert (response.status_code, response.json()["error"]) == (400, error)
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_identifiers_sharing_their_first_255_characters_are_not_one_delivery(tenant, tenant_call):
    from tenants.models import WebhookDelivery

    stem = "i" * 254
    assert tenant_call(HOOK, ISSUE, headers={"X-Atlassian-Webhook-Identifier": stem + "a"}).status_code == 204
    other = tenant_call(HOOK, ISSUE, headers={"X-Atlassian-Webhook-Identifier": stem + "ab"})
    assert other.status_code == 400  # refused, never truncated into the first one
    assert WebhookDelivery.objects.count() == 1


@pytest.mark.django_db
def test_failure_to_record_is_503_so_jira_retries(tenant, tenant_call, monkeypatch):
    from django.db import OperationalError

    from tenants import deliveries

    def broken(*args, **kwargs):
        raise OperationalError("disk full")

    monkeypatch.setattr(deliveries, "record_webhook", broken)
    response = tenant_call(HOOK, ISSUE, headers={"X-Atlassian-Webhook-Identifier": "d-3"})
    assert response.status_code == 503
    assert response.json()["error"] == "database_unavailable"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_hundred_parallel_deliveries_of_twenty_identifiers_are_twenty_processed(make_body, hook_calls):
    import threading

    from django.db import connection
    from django.test import Client

    from connect_testkit import sign_tenant
    from tenants import services
    from tenants.models import WebhookDelivery
    from tests.conftest import TENANT_KEY, TENANT_SECRET

    services.install(make_body(clientKey=TENANT_KEY, sharedSecret=TENANT_SECRET))
    barrier = threading.Barrier(20)
    statuses = []

    def deliver(thread):
        try:
            token = sign_tenant(TENANT_SECRET, client_key=TENANT_KEY, method="POST", url=HOOK)
            for round in range(10):  # 20 threads x 10 rounds: each identifier 10 times, in parallel
                barrier.wait(timeout=30)
                response = Client().post(
                    HOOK,
                    data=json.dumps(ISSUE),
                    content_type="application/json",
                    HTTP_AUTHORIZATION=f"JWT {token}",
                    HTTP_X_ATLASSIAN_WEBHOOK_IDENTIFIER=f"delivery-{(thread + round) % 20}",
                )
                statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(statuses) == [204] * 200
    assert WebhookDelivery.objects.count() == 20
    calls = hook_calls()
    assert sorted(call[2:] for call in calls) == sorted(
        (ISSUE, pk) for pk in WebhookDelivery.objects.values_list("pk", flat=True)
    )
    assert set(WebhookDelivery.objects.values_list("state", flat=True)) == {"done"}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_disabled_and_uninstalled_end_uninstalled(key_server, rsa_key, make_body, settings):
    import threading

    from django.db import connection
    from django.test import Client

    from connect_testkit import sign_install, sign_tenant
    from tenants import services
    from tenants.models import Installation
    from tests.conftest import KID, TENANT_KEY, TENANT_SECRET

    for _ in range(5):
        services.install(make_body(clientKey=TENANT_KEY, sharedSecret=TENANT_SECRET))
        services.enable(TENANT_KEY)
        barrier = threading.Barrier(2)

        def uninstall(barrier=barrier):
            try:
                token = sign_install(
                    rsa_key,
                    kid=KID,
                    client_key=TENANT_KEY,
                    audience=settings.CONNECT["BASE_URL"],
                    url="/lifecycle/uninstalled",
                )
                barrier.wait(timeout=10)
                Client().post(
                    "/lifecycle/uninstalled",
                    data=json.dumps(make_body("uninstalled", clientKey=TENANT_KEY)),
                    content_type="application/json",
                    HTTP_AUTHORIZATION=f"JWT {token}",
                )
            finally:
                connection.close()

        def disable(barrier=barrier):
            try:
                token = sign_tenant(
                    TENANT_SECRET, client_key=TENANT_KEY, method="POST", url="/lifecycle/disabled"
                )
                barrier.wait(timeout=10)
                Client().post(
                    "/lifecycle/disabled",
                    data=json.dumps(make_body("disabled", clientKey=TENANT_KEY)),
                    content_type="application/json",
                    HTTP_AUTHORIZATION=f"JWT {token}",
                )
            finally:
                connection.close()

        threads = [threading.Thread(target=uninstall), threading.Thread(target=disable)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        row = Installation.objects.get(client_key=TENANT_KEY)
        assert (row.state, row.enabled, row.shared_secret) == ("uninstalled", False, None)


# --- A stale installed/uninstalled never undoes a later one (issue 12, item 5) ----------------


@pytest.mark.django_db
def test_a_resent_old_install_token_does_not_revive_an_uninstalled_tenant(lifecycle_call, make_body, client):
    import time

    from audit.models import LifecycleEvent
    from tenants.models import Installation

    now = time.time()
    first = make_body(clientKey="revived-tenant", sharedSecret="secret-one-" + "1" * 30)
    t1 = lifecycle_call(body=first, now=now - 60)
    assert t1.status_code == 204
    second = {**first, "sharedSecret": "secret-two-" + "2" * 30}
    assert lifecycle_call(body=second, now=now - 30).status_code == 204
    assert (
        lifecycle_call(
            "uninstalled", body=make_body("uninstalled", clientKey="revived-tenant"), now=now - 10
        ).status_code
        == 204
    )

    replay = client.post(  # T1 byte for byte, within its lifetime
        "/lifecycle/installed",
        data=json.dumps(first),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"JWT {t1.token}",
    )
    assert (replay.status_code, replay.json()["error"]) == (401, "stale_lifecycle_token")
    row = Installation.objects.get(client_key="revived-tenant")
    assert (row.state, row.shared_secret) == ("uninstalled", None)
    event = LifecycleEvent.objects.order_by("-id").first()
    assert (event.outcome, event.reason) == ("rejected", "stale_lifecycle_token")

    # A genuine reinstall (a newer token) is accepted as ever.
    third = {**first, "sharedSecret": "secret-three-" + "3" * 30}
    assert lifecycle_call(body=third, now=now).status_code == 204
    row.refresh_from_db()
    assert row.state == "installed" and row.reveal_shared_secret() == third["sharedSecret"]


@pytest.mark.django_db
def test_an_older_uninstall_after_a_newer_install_changes_nothing(lifecycle_call, make_body):
    import time

    from tenants.models import Installation

    now = time.time()
    body = make_body(clientKey="ordered-tenant")
    assert lifecycle_call(body=body, now=now - 100).status_code == 204
    assert lifecycle_call(body=body, now=now).status_code == 204  # reinstalled since
    late = lifecycle_call(
        "uninstalled", body=make_body("uninstalled", clientKey="ordered-tenant"), now=now - 50
    )
    assert (late.status_code, late.json()["error"]) == (401, "stale_lifecycle_token")
    assert Installation.objects.get(client_key="ordered-tenant").state == "installed"
