"""tenants/management/commands/rotate_tenant_secrets.py."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from tenants import services
from tenants.crypto import SecretBox
from tenants.fields import SealedSecret
from tenants.models import Installation

pytestmark = pytest.mark.django_db
OLD = "q8Mn2ZQy0E3cdj8B3zZ6m1cJ8vZ0kQ2xN9mVb7a1c3E="
NEW = "Zk3Q5lH9sV0yJ2bX8mN4cR6tW1aD7fG3hK5pL9oU2iE="


def run(*args):
    out, err = StringIO(), StringIO()
    call_command("rotate_tenant_secrets", *args, stdout=out, stderr=err)
    return out.getvalue()


def raw(client_key):
    with connection.cursor() as cursor:
        cursor.execute("SELECT shared_secret FROM tenants_installation WHERE client_key = %s", [client_key])
        return cursor.fetchone()[0]


@pytest.fixture
def old_tenants(settings, make_body):
    settings.TENANTS = {**settings.TENANTS, "SECRET_KEYS": [OLD]}
    for i in range(3):
        services.install(make_body(clientKey=f"t{i}", sharedSecret=f"secret-{i}"))
    services.install(make_body(clientKey="gone"))
    services.uninstall("gone")  # no secret: nothing to rotate
    settings.TENANTS = {**settings.TENANTS, "SECRET_KEYS": [NEW, OLD]}


def test_rotation_moves_every_secret_to_the_first_key(old_tenants, settings):
    assert run("--batch-size", "2") == (
        "tenants with a stored secret: 3\n"
        "re-encrypted under the first key: 3\n"
        "already under the first key: 0\n"
        "verified (decrypt with the configured keys): 3\n"
        "webhook bodies stored encrypted: 0, re-encrypted under the first key: 0, not decryptable: 0\n"
    )
    settings.TENANTS = {**settings.TENANTS, "SECRET_KEYS": [NEW]}  # the old key can go now
    for i in range(3):
        assert Installation.objects.get(client_key=f"t{i}").reveal_shared_secret() == f"secret-{i}"
    assert "already under the first key: 3" in run()


def test_dry_run_writes_nothing(old_tenants):
    before = raw("t0")
    assert "would re-encrypt under the first key: 3" in run("--dry-run")
    assert raw("t0") == before
    assert not SecretBox([NEW]).is_current(before)


def test_a_secret_no_key_decrypts_is_reported_and_kept(old_tenants, settings):
    settings.TENANTS = {**settings.TENANTS, "SECRET_KEYS": [NEW, OLD]}
    foreign = SecretBox(["x" * 43 + "="]).encrypt("s", "t1")
    Installation.objects.filter(client_key="t1").update(shared_secret=SealedSecret(foreign))
    with pytest.raises(CommandError, match=r"1 secret\(s\) and 0 webhook body\(ies\) do not decrypt.*t1"):
        run()
    assert raw("t1") == foreign  # never overwritten
    assert SecretBox([NEW]).is_current(raw("t0"))


def test_bad_batch_size_and_missing_keys_are_command_errors(old_tenants, settings):
    with pytest.raises(CommandError, match="--batch-size"):
        run("--batch-size", "0")
    settings.TENANTS = {**settings.TENANTS, "SECRET_KEYS": [], "DERIVE_DEVELOPMENT_KEY": False}
    with pytest.raises(CommandError, match="TENANT_SECRET_KEYS"):
        run()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_rotation_is_safe_against_a_concurrent_reinstall(settings, make_body):
    import threading

    settings.TENANTS = {**settings.TENANTS, "SECRET_KEYS": [OLD]}
    for i in range(50):
        services.install(make_body(clientKey=f"t{i}", sharedSecret=f"secret-{i}"))
    settings.TENANTS = {**settings.TENANTS, "SECRET_KEYS": [NEW, OLD]}
    errors = []

    def reinstall():
        try:
            for round_ in range(20):
                services.install(make_body(clientKey="t7", sharedSecret=f"fresh-{round_}"))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=reinstall)
    thread.start()
    run("--batch-size", "5")
    thread.join(timeout=60)
    assert errors == []
    assert Installation.objects.get(client_key="t7").reveal_shared_secret() == "fresh-19"
    for i in range(50):
        Installation.objects.get(client_key=f"t{i}").reveal_shared_secret()


def test_webhook_bodies_stored_encrypted_move_to_the_first_key_too(old_tenants, settings, run_tasks):
    from tenants import deliveries
    from tenants.models import WebhookDelivery

    settings.TENANTS = {**settings.TENANTS, "SECRET_KEYS": [OLD]}
    pending = deliveries.record_webhook(
        Installation.objects.get(client_key="t0"),
        event="e",
        identifier="b-1",
        retry_count=0,
        raw_body='{"a": 1}',
    ).delivery
    from tenants import forge

    installation = forge.observe(forge.FitSubject("ari:cloud:ecosystem::installation/r", "c")).installation
    event = forge.record_event(
        installation, event="e", body={"f": 1}, raw_body='{"f": 1}', window=900
    ).delivery
    settings.TENANTS = {**settings.TENANTS, "SECRET_KEYS": [NEW, OLD]}
    assert (
        "webhook bodies stored encrypted: 2, re-encrypted under the first key: 2, not decryptable: 0" in run()
    )
    settings.TENANTS = {**settings.TENANTS, "SECRET_KEYS": [NEW]}  # the old key removed, as README says
    pending.refresh_from_db()
    event.refresh_from_db()
    assert deliveries.open_body(pending) == {"a": 1}
    assert deliveries.open_body(event) == {"f": 1}  # a Forge event's body too
    run_tasks()
    assert WebhookDelivery.objects.get(pk=pending.pk).state == "done"  # before: failed, never processable


def test_a_webhook_body_no_key_decrypts_is_reported_and_kept(old_tenants, settings):
    from tenants import deliveries

    delivery = deliveries.record_webhook(
        Installation.objects.get(client_key="t1"), event="e", identifier="b-2", retry_count=0, raw_body="{}"
    ).delivery
    foreign = SecretBox(["x" * 43 + "="]).encrypt("{}", "webhook-body\x00t1")
    type(delivery).objects.filter(pk=delivery.pk).update(body_sealed=foreign)
    with pytest.raises(CommandError, match=r"0 secret\(s\) and 1 webhook body\(ies\) do not decrypt"):
        run()
    assert type(delivery).objects.get(pk=delivery.pk).body_sealed == foreign
