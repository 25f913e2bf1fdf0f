"""tenants.forge: Forge installations (observe, lifecycle) and Forge events (dedupe, at least once)."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from django.db import connection

from tenants import deliveries, forge, services
from tenants.models import ForgeInstallation, WebhookDelivery

CLOUD = "c821c30c-a2ad-47d7-b742-9fed48cfd6b9"


def subject(installation_id=None, **kw):
    installation_id = installation_id or "ari:cloud:ecosystem::installation/" + str(uuid.uuid4())
    return forge.FitSubject(installation_id=installation_id, cloud_id=kw.pop("cloud_id", CLOUD), **kw)


@pytest.mark.django_db
def test_observe_creates_then_refreshes_without_writing_when_nothing_changed(django_assert_num_queries):
    first = forge.observe(subject(app_version="1.0.0"))
    assert first.change == "created" and "first seen" in first.detail()
    with django_assert_num_queries(2):  # the row, and the Connect tenant it is not yet linked to
        again = forge.observe(subject(first.installation.installation_id, app_version="1.0.0"))
    assert again.change == "" and again.detail() == ""
    assert ForgeInstallation.objects.count() == 1


@pytest.mark.django_db
def test_the_dedupe_key_ignores_retry_context_wherever_it_is():
    event = {"eventType": "avi:jira:created:issue", "issue": {"key": "A-1"}}
    retry = {"retryCount": 3, "retryReason": "TIMEOUT_ERROR", "retryData": None}
    key = forge.dedupe_key(event)
    assert forge.dedupe_key({**event, "retryContext": retry}) == key
    assert forge.dedupe_key({"payload": event}) == forge.dedupe_key(
        {"payload": {**event, "retryContext": retry}}
    )
    assert forge.dedupe_key({**event, "issue": {"key": "A-2"}}) != key
    assert forge.dedupe_key(dict(reversed(list(event.items())))) == key  # key order does not matter
    assert forge.retry_context({"payload": {"retryContext": retry}}) == retry
    assert forge.retry_context(event) is None


@pytest.mark.django_db
def test_record_event_stores_first_attempts_and_folds_retries():
    row = forge.observe(subject()).installation
    event = {"eventType": "avi:jira:created:issue", "n": 1}
    retry = {**event, "retryContext": {"retryCount": 1}}
    raw = json.dumps(event)
    a = forge.record_event(row, event="e", body=event, raw_body=raw, window=900)
    b = forge.record_event(row, event="e", body=retry, raw_body=json.dumps(retry), window=900)
    c = forge.record_event(row, event="e", body=event, raw_body=raw, window=900)
    d = forge.record_event(row, event="e", body=retry, raw_body=json.dumps(retry), window=900)
    assert (a.created, b.created, c.created, d.created) == (True, False, True, False)
    assert b.delivery.pk == a.delivery.pk and d.delivery.pk == c.delivery.pk  # the newest with that key
    assert deliveries.open_body(WebhookDelivery.objects.get(pk=a.delivery.pk)) == event


@pytest.mark.django_db
def test_a_forge_event_body_is_bound_to_its_installation():
    one = forge.observe(subject()).installation
    other = forge.observe(subject(cloud_id="d0d52620-1111-4222-8333-444455556666")).installation
    result = forge.record_event(one, event="e", body={"a": 1}, raw_body='{"a": 1}', window=900)
    moved = WebhookDelivery.objects.get(pk=result.delivery.pk)
    moved.forge_installation = other  # a sealed body copied to another installation's row
    from tenants.crypto import SecretDecryptionError

    with pytest.raises(SecretDecryptionError):
        deliveries.open_body(moved)


@pytest.mark.django_db
def test_a_delivery_has_exactly_one_sender(tenant):
    from django.db import IntegrityError, transaction

    row = forge.observe(subject()).installation
    with pytest.raises(IntegrityError), transaction.atomic():
        WebhookDelivery.objects.create(installation=tenant, forge_installation=row, event="e")
    with pytest.raises(IntegrityError), transaction.atomic():
        WebhookDelivery.objects.create(event="e")


@pytest.mark.django_db
def test_lifecycle_events_are_ordered_by_iat_and_an_uninstall_is_idempotent():
    row = forge.observe(subject()).installation
    assert forge.apply_lifecycle(row, "avi:forge:installed:app", 100).applied
    stale = forge.apply_lifecycle(row, "avi:forge:upgraded:app", 50)
    assert (stale.applied, stale.reason) == (False, "stale_lifecycle_token")
    assert forge.apply_lifecycle(row, "avi:forge:uninstalled:app", 200).applied
    again = forge.apply_lifecycle(row, "avi:forge:uninstalled:app", 300)
    assert not again.applied and "already uninstalled" in again.detail
    # Nothing but a newer installed brings it back.
    assert not forge.apply_lifecycle(row, "avi:forge:installed:app", 250).applied
    assert forge.apply_lifecycle(row, "avi:forge:installed:app", 400).applied
    row.refresh_from_db()
    assert (row.state, row.lifecycle_iat) == ("installed", 400)


@pytest.mark.django_db
def test_a_connect_tenant_is_linked_by_its_installation_id(make_body):
    uid = str(uuid.uuid4())
    tenant = services.install(make_body(installationId=uid)).installation
    observed = forge.observe(subject("ari:cloud:ecosystem::installation/" + uid))
    assert observed.installation.tenant == tenant


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_first_calls_of_one_installation_make_one_record():
    from django.db import connections

    installation_id = "ari:cloud:ecosystem::installation/" + str(uuid.uuid4())
    barrier, results = threading.Barrier(6), []

    def call():
        try:
            barrier.wait()
            results.append(forge.observe(subject(installation_id)).installation.pk)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results) == 6
    assert ForgeInstallation.objects.filter(installation_id=installation_id).count() == 1
    ForgeInstallation.objects.all().delete()
    assert connection.vendor == "postgresql"


@pytest.mark.django_db
def test_a_late_older_fit_changes_nothing_it_says(make_body):
    installation_id = "ari:cloud:ecosystem::installation/" + str(uuid.uuid4())
    forge.observe(subject(installation_id, app_version="2.0.0", fit_iat=200))
    forge.observe(subject(installation_id, app_version="1.0.0", fit_iat=100))  # retried late
    assert ForgeInstallation.objects.get().app_version == "2.0.0"


@pytest.mark.django_db
def test_an_uninstalled_connect_tenant_is_never_linked_and_case_does_not_matter(make_body):
    gone, upper = str(uuid.uuid4()), str(uuid.uuid4())
    services.install(make_body(clientKey="gone", installationId=gone))
    services.uninstall("gone")
    kept = services.install(make_body(clientKey="kept", installationId=upper.upper())).installation
    assert forge.observe(subject("ari:cloud:ecosystem::installation/" + gone)).installation.tenant is None
    other_site = "d0d52620-1111-4222-8333-444455556666"
    linked = forge.observe(subject("ari:cloud:ecosystem::installation/" + upper, cloud_id=other_site))
    assert linked.installation.tenant == kept
