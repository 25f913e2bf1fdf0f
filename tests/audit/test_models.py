"""audit/models.py: the audit row, its manager (record, fold), body cleansing, rollbacks."""

import json

import pytest
from django.db import transaction

from audit.models import LifecycleEvent, cleanse_body
from tenants.models import Installation


class Boom(Exception):
    pass


def test_cleanse_masks_secrets_at_any_depth():
    body = {"clientKey": "c", "sharedSecret": "s3cr3t", "nested": {"sharedSecret": "x", "ok": [{"jwt": "t"}]}}
    cleansed = cleanse_body(body)
    assert cleansed["clientKey"] == "c"
    assert cleansed["sharedSecret"] == "********"
    assert cleansed["nested"]["sharedSecret"] == "********"
    assert cleansed["nested"]["ok"][0]["jwt"] == "********"
    assert body["sharedSecret"] == "s3cr3t"  # the caller's object is untouched


def test_cleanse_caps_the_size_and_keeps_known_fields():
    body = {"clientKey": "c", "sharedSecret": "s3cr3t", "description": "d" * 10_000, "junk": "j" * 10_000}
    cleansed = cleanse_body(body, max_bytes=1024)
    assert cleansed["_truncated"] is True
    assert cleansed["_original_bytes"] > 20_000
    assert cleansed["clientKey"] == "c"
    assert "s3cr3t" not in str(cleansed)
    assert len(cleansed["description"]) == 200
    assert "junk" not in cleansed


@pytest.mark.django_db
def test_record_writes_one_cleansed_row():
    event = LifecycleEvent.objects.record(
        event_type="installed",
        outcome="rejected",
        client_key="client-a",
        reason="bad_signature",
        detail="The token's signature does not verify.",
        key_id="kid-1",
        token_fingerprint="0123456789abcdef",
        remote_addr="127.0.0.1",
        path="/lifecycle/installed",
        body={"clientKey": "client-a", "sharedSecret": "s3cr3t"},
    )
    row = LifecycleEvent.objects.get()
    assert row.pk == event.pk
    assert (row.event_type, row.outcome, row.reason, row.key_id) == (
        "installed",
        "rejected",
        "bad_signature",
        "kid-1",
    )
    assert row.body == {"clientKey": "client-a", "sharedSecret": "********"}
    assert "s3cr3t" not in repr(row) and "s3cr3t" not in str(row.body)


def test_event_time_is_not_editable():
    assert LifecycleEvent._meta.get_field("created_at").editable is False


@pytest.mark.django_db
def test_history_survives_deleting_the_installation():
    installation = Installation.objects.create(client_key="c", base_url="https://c.atlassian.net")
    LifecycleEvent.objects.record(event_type="installed", outcome="accepted", client_key="c")
    installation.delete()
    assert LifecycleEvent.objects.filter(client_key="c").count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_audit_row_written_in_a_transaction_commits_with_it_or_not_at_all():
    """An accepted call's row joins its change: both commit, or neither (operators' actions too)."""
    with pytest.raises(Boom), transaction.atomic():
        Installation.objects.create(client_key="c", base_url="https://c.atlassian.net")
        LifecycleEvent.objects.record(event_type="installed", outcome="accepted", client_key="c")
        raise Boom
    assert not Installation.objects.exists() and not LifecycleEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_audit_row_written_after_a_failed_service_call_survives():
    """The middleware's order: the business transaction rolls back, then the row is written."""
    try:
        with transaction.atomic():
            Installation.objects.create(client_key="c", base_url="https://c.atlassian.net")
            raise Boom
    except Boom:
        LifecycleEvent.objects.record(event_type="installed", outcome="rejected", reason="x", client_key="c")
    assert not Installation.objects.exists()
    assert LifecycleEvent.objects.filter(reason="x").count() == 1


# --- Unverified rejections are folded, their bodies excerpted (issue 12, item 2) ---------------


def _reject(**overrides):
    from audit.models import LifecycleEvent

    fields = {
        "event_type": "installed",
        "outcome": "rejected",
        "reason": "authorization_header_missing",
        "client_key": "claimed",
        "path": "/lifecycle/installed",
        "remote_addr": "203.0.113.5",
        "body": {
            "clientKey": "claimed",
            "sharedSecret": "leak-me",
            "baseUrl": "https://x.atlassian.net",
            "pad": "A" * 4000,
        },
        **overrides,
    }
    return LifecycleEvent.objects.fold_or_record(**fields)


@pytest.mark.django_db
def test_identical_unverified_rejections_fold_into_one_row_with_a_count():
    from django.core.cache import cache

    from audit.models import LifecycleEvent

    cache.clear()
    first = _reject()
    assert first is not None
    assert all(_reject() is None for _ in range(49))
    row = LifecycleEvent.objects.get()
    assert row.count == 50 and row.last_seen_at >= row.created_at
    assert row.body == {"_excerpt": True, "clientKey": "claimed", "baseUrl": "https://x.atlassian.net"}
    assert len(json.dumps(row.body)) < 512  # a hard cap, whatever the body
    _reject(remote_addr="203.0.113.6")  # another source: its own row
    _reject(reason="malformed_body")  # another reason: its own row
    assert LifecycleEvent.objects.count() == 3
    cache.clear()  # the window ends
    _reject()
    assert LifecycleEvent.objects.count() == 4


@pytest.mark.django_db
def test_an_anonymous_flood_writes_one_row_not_one_per_request(client):
    from django.core.cache import cache

    from audit.models import LifecycleEvent

    cache.clear()
    for _ in range(60):
        assert client.get("/webhooks/jira:issue_created").status_code == 405
    for _ in range(40):
        client.post(
            "/lifecycle/installed",
            data='{"clientKey": "c", "pad": "' + "B" * 4000 + '"}',
            content_type="application/json",
        )
    rows = list(LifecycleEvent.objects.order_by("id").values_list("reason", "count"))
    assert rows == [("method_not_allowed", 60), ("malformed_body", 40)]


@pytest.mark.django_db
def test_anonymous_disabled_and_webhooks_with_chosen_event_names_fold_too(client):
    from django.core.cache import cache

    from audit.models import LifecycleEvent

    cache.clear()
    fields = {"clientKey": "c", "baseUrl": "https://c.atlassian.net", "key": "django-connect-app"}
    body = json.dumps({**fields, "eventType": "disabled"})
    for _ in range(30):
        assert (
            client.post("/lifecycle/disabled", data=body, content_type="application/json").status_code == 204
        )
    for index in range(30):  # a new event name each time: the path varies, the route does not
        client.post(
            f"/webhooks/evt{index}",
            data="{}",
            content_type="application/json",
            HTTP_AUTHORIZATION="JWT a.b.c",
        )
    rows = sorted(LifecycleEvent.objects.values_list("event_type", "outcome", "count"))
    assert rows == [("disabled", "ignored", 30), ("webhook", "rejected", 30)]


@pytest.mark.django_db
def test_ipv6_sources_in_one_64_fold_together():
    from django.core.cache import cache

    from audit.models import LifecycleEvent

    cache.clear()
    for host in range(10):
        _reject(remote_addr=f"2001:db8:1:2::{host + 1:x}")
    _reject(remote_addr="2001:db8:1:3::1")  # another /64
    assert sorted(LifecycleEvent.objects.values_list("count", flat=True)) == [1, 10]
