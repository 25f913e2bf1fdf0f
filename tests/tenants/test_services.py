"""tenants/services.py: install / uninstall / enable / disable, signals, concurrency."""

import threading

import pytest
from django.db import close_old_connections, connection

from tenants import services, signals
from tenants.models import Installation

pytestmark = pytest.mark.django_db


@pytest.fixture
def received():
    calls = []

    def receiver(signal, **kwargs):
        calls.append((signal, kwargs))

    hooked = [
        signals.tenant_installed,
        signals.tenant_uninstalled,
        signals.tenant_enabled,
        signals.tenant_disabled,
    ]
    for signal in hooked:
        signal.connect(receiver, weak=False)
    yield calls
    for signal in hooked:
        signal.disconnect(receiver)


def test_install_creates_the_tenant_with_every_body_field(make_body, django_capture_on_commit_callbacks):
    body = make_body(clientKey="client-a", somethingNew={"x": 1}, installationId="ari:cloud:ecosystem::1")
    with django_capture_on_commit_callbacks(execute=True):
        result = services.install(body)
    assert result.created and result.secret_changed and result.previous_base_url is None
    row = Installation.objects.get(client_key="client-a")
    assert row.state == Installation.State.INSTALLED and row.enabled is False
    assert row.reveal_shared_secret() == body["sharedSecret"]
    assert (row.app_key, row.base_url, row.product_type) == ("django-connect-app", body["baseUrl"], "jira")
    assert (row.service_entitlement_number, row.entitlement_id, row.entitlement_number) == (
        "SEN-1234",
        "e-1",
        "E-1",
    )
    assert (row.oauth_client_id, row.installation_id, row.last_event_type) == (
        "oauth-1",
        "ari:cloud:ecosystem::1",
        "installed",
    )
    assert row.extra == {"publicKey": body["publicKey"], "somethingNew": {"x": 1}}
    assert "sharedSecret" not in row.extra


def test_reinstall_replaces_secret_and_records_site_rename(
    make_body, received, django_capture_on_commit_callbacks
):
    services.install(make_body(clientKey="client-a", sharedSecret="old"))
    renamed = make_body(clientKey="client-a", sharedSecret="new", baseUrl="https://renamed.atlassian.net")
    with django_capture_on_commit_callbacks(execute=True):
        result = services.install(renamed)
    assert not result.created and result.secret_changed
    assert result.previous_base_url == "https://example-site.atlassian.net"
    row = Installation.objects.get()
    assert row.reveal_shared_secret() == "new"
    assert row.base_url == "https://renamed.atlassian.net"
    [(signal, kwargs)] = received
    assert signal is signals.tenant_installed
    assert kwargs["previous_base_url"] == "https://example-site.atlassian.net"
    assert kwargs["created"] is False and kwargs["installation"].pk == row.pk


def test_same_install_twice_is_idempotent(make_body):
    body = make_body(clientKey="client-a")
    services.install(body)
    first = Installation.objects.get()
    result = services.install(body)
    assert not result.created and not result.secret_changed
    second = Installation.objects.get()
    assert second.shared_secret == first.shared_secret  # not even re-encrypted
    assert Installation.objects.count() == 1


def test_new_client_key_for_known_base_url_is_a_new_tenant(make_body):
    services.install(make_body(clientKey="old-site"))
    services.install(make_body(clientKey="imported-site"))
    assert sorted(Installation.objects.values_list("client_key", flat=True)) == ["imported-site", "old-site"]


def test_client_keys_compare_exactly(make_body):
    services.install(make_body(clientKey="Client-A"))
    services.install(make_body(clientKey="client-a"))
    assert Installation.objects.count() == 2


def test_uninstall_erases_the_secret_and_reinstall_revives(
    make_body, received, django_capture_on_commit_callbacks
):
    services.install(make_body(clientKey="client-a"))
    services.enable("client-a")
    with django_capture_on_commit_callbacks(execute=True):
        row = services.uninstall("client-a")
    assert row.state == Installation.State.UNINSTALLED and row.enabled is False
    stored = Installation.objects.get()
    assert stored.shared_secret is None and stored.uninstalled_at is not None
    with pytest.raises(LookupError):
        stored.reveal_shared_secret()
    assert [s for s, _ in received] == [signals.tenant_uninstalled]
    services.install(make_body(clientKey="client-a", sharedSecret="fresh"))
    revived = Installation.objects.get()
    assert revived.state == Installation.State.INSTALLED and revived.uninstalled_at is None
    assert revived.reveal_shared_secret() == "fresh"


def test_uninstall_of_unknown_tenant_is_a_no_op():
    assert services.uninstall("nobody") is None
    assert not Installation.objects.exists()


def test_enable_and_disable(make_body, received, django_capture_on_commit_callbacks):
    services.install(make_body(clientKey="client-a"))
    with django_capture_on_commit_callbacks(execute=True):
        services.enable("client-a")
    assert Installation.objects.get().enabled is True
    with django_capture_on_commit_callbacks(execute=True):
        services.disable("client-a")
    assert Installation.objects.get().enabled is False
    assert [s for s, _ in received] == [signals.tenant_enabled, signals.tenant_disabled]


def test_disabled_after_uninstalled_never_revives(make_body):
    services.install(make_body(clientKey="client-a"))
    services.uninstall("client-a")
    for change in (services.disable, services.enable):
        with pytest.raises(services.TenantNotInstalled):
            change("client-a")
    row = Installation.objects.get()
    assert row.state == Installation.State.UNINSTALLED and row.enabled is False


def test_enable_unknown_tenant_raises():
    with pytest.raises(services.TenantNotInstalled):
        services.enable("nobody")


def test_signals_wait_for_commit(make_body, received):
    services.install(make_body())  # inside the test's transaction: never committed
    assert received == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_threads_installing_one_client_key_give_one_row(make_body):
    bodies = [make_body(clientKey="racing-client", sharedSecret=f"secret-{i}") for i in range(20)]
    barrier = threading.Barrier(len(bodies))
    errors, results = [], []

    def worker(body):
        try:
            barrier.wait(timeout=10)
            results.append(services.install(body))
        except Exception as exc:
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=worker, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert Installation.objects.filter(client_key="racing-client").count() == 1
    assert sum(result.created for result in results) == 1
    # The last writer's secret is the one stored, and it decrypts.
    assert Installation.objects.get().reveal_shared_secret() in {body["sharedSecret"] for body in bodies}
