"""tenants/management/commands/prune_lifecycle_events.py."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.models import LifecycleEvent
from tenants.models import Installation, WebhookDelivery

pytestmark = pytest.mark.django_db


@pytest.fixture
def history():
    installation = Installation.objects.create(client_key="c", base_url="https://c.atlassian.net")
    now = timezone.now()
    for days in (1, 40, 400):
        event = LifecycleEvent.objects.record(event_type="installed", outcome="accepted", client_key="c")
        LifecycleEvent.objects.filter(pk=event.pk).update(created_at=now - timedelta(days=days))
        WebhookDelivery.objects.create(
            installation=installation,
            event="jira:issue_created",
            identifier=f"id-{days}",
            received_at=now - timedelta(days=days),
            state="done",
        )


def run(*args):
    out, err = StringIO(), StringIO()
    call_command("prune_lifecycle_events", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_defaults_keep_a_year_of_events_and_a_month_of_deliveries(history):
    out, err = run()
    assert out == (
        "lifecycle events older than 365 days: deleted 1\nwebhook deliveries older than 30 days: deleted 2\n"
    )
    assert "deleted" in err  # progress
    assert LifecycleEvent.objects.count() == 2
    assert sorted(WebhookDelivery.objects.values_list("identifier", flat=True)) == ["id-1"]


def test_dry_run_counts_and_deletes_nothing(history):
    out, _ = run("--dry-run", "--events-days", "10", "--webhooks-days", "10")
    assert out == (
        "lifecycle events older than 10 days: would delete 2\n"
        "webhook deliveries older than 10 days: would delete 2\n"
    )
    assert LifecycleEvent.objects.count() == 3 and WebhookDelivery.objects.count() == 3


def test_ages_are_options(history):
    out, _ = run("--events-days", "10", "--webhooks-days", "500")
    assert "deleted 2" in out.splitlines()[0] and "deleted 0" in out.splitlines()[1]


def test_bad_age_is_a_command_error(history):
    with pytest.raises(CommandError, match="--events-days must be at least 1"):
        run("--events-days", "-3")
    with pytest.raises(CommandError, match="--webhooks-days must be at least 1"):
        run("--webhooks-days", "0")
    assert LifecycleEvent.objects.count() == 3


def test_pending_processing_and_failed_deliveries_are_never_pruned(history):
    installation = Installation.objects.get()
    old = timezone.now() - timedelta(days=400)
    for state in ("pending", "processing", "failed", "discarded"):
        WebhookDelivery.objects.create(
            installation=installation, event="e", identifier=state, received_at=old, state=state
        )
    out, _ = run("--webhooks-days", "10")
    # id-40, id-400 and the discarded one: processed or given up on
    assert out.splitlines()[1] == "webhook deliveries older than 10 days: deleted 3"
    assert sorted(WebhookDelivery.objects.values_list("identifier", flat=True)) == [
        "failed",
        "id-1",
        "pending",
        "processing",
    ]
