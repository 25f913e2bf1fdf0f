"""tenants.rows: the hot path's one-statement INSERT and SELECT give what the ORM gives."""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from tenants import deliveries, services
from tenants.fields import SealedSecret
from tenants.models import Installation, WebhookDelivery
from tenants.rows import insert_row, select_row

pytestmark = pytest.mark.django_db


@pytest.fixture
def installation(make_body):
    return services.install(make_body(clientKey="client-rows")).installation


def test_select_row_gives_what_the_orm_gives_whatever_the_order_of_names(installation):
    Installation.objects.filter(pk=installation.pk).update(suspended=True)
    names = ("suspended", "shared_secret", "id", "state", "installed_at", "client_key")
    row = select_row(connection, Installation, names, "client_key", installation.client_key)
    orm = Installation.objects.only(*names).get(pk=installation.pk)
    assert row is not None
    for name in names:
        assert getattr(row, name) == getattr(orm, name), name
    # Converted as the ORM converts: SQLite's 0/1 and text dates, the sealed secret's field.
    assert row.suspended is True and isinstance(row.shared_secret, SealedSecret)
    assert row.installed_at.tzinfo is not None
    assert row.reveal_shared_secret() == orm.reveal_shared_secret()


def test_select_row_of_nothing_is_none_and_of_a_bad_name_a_typeerror(installation):
    assert select_row(connection, Installation, ("id",), "client_key", "nobody") is None
    with pytest.raises(TypeError, match="no column 'nope'"):
        select_row(connection, Installation, ("id", "nope"), "client_key", installation.client_key)
    with pytest.raises(TypeError, match="not a column"):
        select_row(connection, Installation, ("id",), "webhook_deliveries", 1)


def test_insert_row_skipping_conflicts_says_which_row_is_new(installation):
    def delivery(identifier: str) -> WebhookDelivery:
        return WebhookDelivery(installation=installation, event="e", identifier=identifier, body_sealed="x")

    names = deliveries._DELIVERY_FIELDS  # every column without a database default
    first = insert_row(connection, delivery("a"), names, skip_conflicts=True)
    assert first == WebhookDelivery.objects.get(identifier="a").pk
    assert insert_row(connection, delivery("a"), names, skip_conflicts=True) is None  # the same identifier
    stored = WebhookDelivery.objects.get(pk=first)
    assert (stored.state, stored.attempts, stored.retry_count) == ("pending", 0, 0)
    assert abs((stored.received_at - timezone.now()).total_seconds()) < 60


def test_for_processing_loads_the_delivery_and_its_installation_whole(installation):
    pk = WebhookDelivery.objects.create(installation=installation, event="e", identifier="x").pk
    delivery = WebhookDelivery.objects.for_processing(pk)
    assert delivery is not None and delivery.pk == pk and delivery.identifier == "x"
    assert delivery.installation.base_url == installation.base_url
    assert delivery.installation.get_deferred_fields() == set() and delivery.get_deferred_fields() == set()
    assert WebhookDelivery.objects.for_processing(pk + 1000) is None


def test_select_row_prepares_its_key_as_the_orm_does():
    from django_tasks_db.models import DBTaskResult

    from tenants.tasks import process_webhook_delivery

    result = process_webhook_delivery.enqueue(1, 0)
    stored = DBTaskResult.objects.get(id=result.id)
    # A UUID key: SQLite stores it as 32 hex digits, which the ORM makes of a UUID or its text.
    for key in (stored.id, str(stored.id)):
        row = select_row(connection, DBTaskResult, ("id", "status", "args_kwargs"), "id", key)
        assert row is not None and (row.id, row.status, row.args_kwargs) == (
            stored.id,
            "READY",
            {"args": [1, 0], "kwargs": {}},
        )
