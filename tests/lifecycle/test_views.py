"""lifecycle/views.py: health probe (database up and down) and declared routes."""

import json
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
    from lifecycle.verification import token_fingerprint
    from tenants.models import Installation, LifecycleEvent
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
    from tenants.models import Installation, LifecycleEvent

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
    from tenants.models import Installation, LifecycleEvent

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
    from tenants.models import Installation, LifecycleEvent

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

    from lifecycle.keys import provider
    from lifecycle.simulator import sign_install
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
