"""tenants.tenant_cache: each worker remembers verified tenants for webhooks, and never acts on a
stale one: an uninstall, a new secret or a suspension made elsewhere (another worker, admin) is
honoured on the next request, because the delivery's INSERT checks the row in the same statement."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import LifecycleEvent
from tenants import deliveries, services
from tenants.models import Installation, WebhookDelivery
from tenants.tenant_cache import TenantCache, VerifiedTenant, tenant_cache
from tests.conftest import TENANT_KEY, TENANT_SECRET

pytestmark = pytest.mark.django_db

HOOK = "/webhooks/jira:issue_created"
ISSUE = {"webhookEvent": "jira:issue_created", "issue": {"key": "ABC-1"}}


def send(tenant_call, identifier, **kwargs):
    return tenant_call(HOOK, ISSUE, headers={"X-Atlassian-Webhook-Identifier": identifier}, **kwargs)


def tenant_reads(queries) -> int:
    return sum(
        q["sql"].startswith("SELECT") and 'FROM "tenants_installation"' in q["sql"]
        for q in queries.captured_queries
    )


def last_reason() -> str:
    return LifecycleEvent.objects.order_by("-id").values_list("reason", flat=True).first() or ""


def test_a_second_webhook_reads_no_tenant_row(tenant, tenant_call):
    with CaptureQueriesContext(connection) as first:
        assert send(tenant_call, "one").status_code == 204
    with CaptureQueriesContext(connection) as second:
        assert send(tenant_call, "two").status_code == 204
    assert (tenant_reads(first), tenant_reads(second)) == (1, 0)
    assert len(tenant_cache) == 1
    # The INSERT itself checks the tenant's row: it names the verified state and secret.
    insert = next(q["sql"] for q in second.captured_queries if q["sql"].startswith("INSERT"))
    assert 'EXISTS (SELECT 1 FROM "tenants_installation"' in insert
    assert WebhookDelivery.objects.count() == 2


def test_an_uninstall_elsewhere_is_honoured_on_the_next_webhook(tenant, tenant_call):
    assert send(tenant_call, "before").status_code == 204
    services.uninstall(TENANT_KEY)  # another worker, or the lifecycle call, changes the row
    response = send(tenant_call, "after")
    assert (response.status_code, response.json()["error"]) == (401, "invalid_token")
    assert last_reason() == "tenant_uninstalled"
    assert list(WebhookDelivery.objects.values_list("identifier", flat=True)) == ["before"]
    assert tenant_cache.get(TENANT_KEY) is None


def test_a_suspension_elsewhere_is_honoured_on_the_next_webhook(tenant, tenant_call):
    assert send(tenant_call, "before").status_code == 204
    Installation.objects.filter(client_key=TENANT_KEY).update(suspended=True)
    response = send(tenant_call, "after")
    assert (response.status_code, response.json()["error"]) == (403, "tenant_suspended")
    assert WebhookDelivery.objects.count() == 1
    assert tenant_cache.get(TENANT_KEY) is None  # a suspended tenant is not remembered


def test_a_reinstall_with_a_new_secret_takes_effect_at_once(tenant, tenant_call, make_body):
    assert send(tenant_call, "before").status_code == 204
    new_secret = "a-new-shared-secret-0123456789abcdef0123456789"
    services.install(make_body(clientKey=TENANT_KEY, sharedSecret=new_secret))
    # Signed with the new secret: accepted, though this worker remembered the old one.
    assert send(tenant_call, "new", secret=new_secret).status_code == 204
    assert tenant_cache.get(TENANT_KEY).shared_secret == new_secret
    # Signed with the old secret: refused, though this worker remembered it a moment ago.
    old = send(tenant_call, "old", secret=TENANT_SECRET)
    assert (old.status_code, old.json()["error"]) == (401, "invalid_token")
    assert last_reason() == "bad_signature"
    assert sorted(WebhookDelivery.objects.values_list("identifier", flat=True)) == ["before", "new"]
    assert tenant_cache.get(TENANT_KEY) is None  # a failure forgets it: the next call rereads the row


def test_a_retry_with_the_tenant_remembered_is_still_a_duplicate(tenant, tenant_call):
    assert send(tenant_call, "same").status_code == 204
    assert send(tenant_call, "same").status_code == 204
    assert WebhookDelivery.objects.count() == 1


def test_a_tenant_changing_twice_during_one_call_is_a_503_and_stores_nothing(
    tenant, tenant_call, monkeypatch
):
    assert send(tenant_call, "first").status_code == 204
    monkeypatch.setattr(deliveries, "_insert_unless_duplicate", lambda delivery: False)
    monkeypatch.setattr(deliveries, "_changed", lambda installation: True)
    response = send(tenant_call, "second")
    assert (response.status_code, response.json()["error"]) == (503, "tenant_changed")
    assert last_reason() == "tenant_changed"
    assert WebhookDelivery.objects.count() == 1


def test_with_the_cache_off_every_webhook_reads_the_tenant(tenant, tenant_call, settings):
    settings.TENANTS = {**settings.TENANTS, "VERIFY_CACHE_SIZE": 0}
    for identifier in ("one", "two"):
        with CaptureQueriesContext(connection) as queries:
            assert send(tenant_call, identifier).status_code == 204
        assert tenant_reads(queries) == 1
    assert len(tenant_cache) == 0


def test_the_cache_keeps_the_most_recently_used_and_follows_its_setting(tenant, settings):
    settings.TENANTS = {**settings.TENANTS, "VERIFY_CACHE_SIZE": 2}
    cache = TenantCache()
    for key in ("a", "b"):
        cache.put(key, VerifiedTenant(tenant, "s"))
    assert cache.get("a") is not None  # now the most recently used
    cache.put("c", VerifiedTenant(tenant, "s"))
    assert (cache.get("a") is not None, cache.get("b"), cache.get("c") is not None) == (True, None, True)
    cache.drop("a")
    assert cache.get("a") is None and len(cache) == 1
    settings.TENANTS = {**settings.TENANTS, "VERIFY_CACHE_SIZE": 0}
    cache.put("d", VerifiedTenant(tenant, "s"))
    assert cache.get("d") is None and len(cache) == 0


def test_the_secret_never_shows_in_a_repr(tenant, tenant_call):
    assert send(tenant_call, "one").status_code == 204
    known = tenant_cache.get(TENANT_KEY)
    assert known is not None and TENANT_SECRET not in repr(known) and TENANT_SECRET not in str(known)


def test_an_uninstall_forgets_the_secret_in_this_process(
    tenant, tenant_call, django_capture_on_commit_callbacks
):
    assert send(tenant_call, "one").status_code == 204
    with django_capture_on_commit_callbacks(execute=True):
        services.uninstall(TENANT_KEY)
    assert tenant_cache.get(TENANT_KEY) is None


def test_entries_expire(tenant):
    from tenants.tenant_cache import MAX_AGE

    clock = [1000.0]
    cache = TenantCache(timer=lambda: clock[0])
    cache.put("a", VerifiedTenant(tenant, "s"))
    clock[0] += MAX_AGE - 1
    assert cache.get("a") is not None
    clock[0] += 2
    assert cache.get("a") is None


def test_a_reinstall_then_an_old_token_without_identifier_is_refused_as_unverified(
    tenant, tenant_call, make_body
):
    # The reviewer's case: a stale remembered secret must not make a 409 (webhook_token_reused).
    token = send(tenant_call, "first").token
    services.install(make_body(clientKey=TENANT_KEY, sharedSecret="a-new-shared-secret-0123456789abcdef0123"))
    again = tenant_call(HOOK, ISSUE, token=token)  # the same token, no identifier
    assert (again.status_code, again.json()["error"]) == (401, "invalid_token")
    assert WebhookDelivery.objects.count() == 1


def test_a_guard_that_refuses_an_unchanged_tenant_retries_then_503s(tenant, tenant_call, monkeypatch):
    # The reviewer's case: the row changed and changed back between the read and the insert.
    from tenants import rows

    real = rows.insert_row
    monkeypatch.setattr(
        deliveries, "insert_row", lambda *a, **kw: None if kw.get("unless_changed") else real(*a, **kw)
    )
    response = send(tenant_call, "x")
    assert (response.status_code, response.json()["error"]) == (503, "tenant_changed")  # Jira retries
    assert WebhookDelivery.objects.count() == 0
