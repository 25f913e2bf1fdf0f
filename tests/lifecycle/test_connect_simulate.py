"""manage.py connect_simulate against a live server on loopback (the real verification path)."""

import socket
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from audit.models import LifecycleEvent
from tenants.models import Installation, WebhookDelivery

pytestmark = pytest.mark.django_db(transaction=True)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def simulate(*args):
    out = StringIO()
    try:
        call_command("connect_simulate", *args, stdout=out)
    except CommandError as exc:
        return out.getvalue(), str(exc)
    return out.getvalue(), None


def test_all_scenarios_pass_against_a_live_server(live_server, settings):
    port = free_port()
    settings.CONNECT = {**settings.CONNECT, "KEY_SERVERS": [f"http://127.0.0.1:{port}"]}
    out, error = simulate("all", "--url", live_server.url, "--key-server-port", str(port))
    assert error is None, out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == 16
    assert all(line.startswith("[ok  ]") for line in lines)
    assert out.rstrip().endswith("16 passed, 0 failed")
    expected = {
        ("happy", "installed (signed install, RS256)"): "-> 204",
        ("legacy", "first install without a JWT"): "-> 401 signed_install_required",
        ("attacks", "forged reinstall signed by another key"): "-> 401 bad_signature",
        ("attacks", "token issued for another app (aud)"): "-> 401 audience_mismatch",
        ("attacks", "token for another URL (qsh)"): "-> 401 qsh_mismatch",
        ("attacks", "hostile kid (path traversal)"): "-> 401 invalid_kid",
        ("attacks", "webhook signed with a guessed secret"): "-> 401 invalid_token",
    }
    for (scenario, name), outcome in expected.items():
        assert any(scenario in line and name in line and line.endswith(outcome) for line in lines), name
    # What the server stored: two tenants installed and uninstalled, one webhook delivery.
    assert Installation.objects.filter(state="uninstalled").count() == 2
    assert WebhookDelivery.objects.count() == 1
    rejected = LifecycleEvent.objects.filter(outcome="rejected")
    assert sum(rejected.values_list("count", flat=True)) == 8  # 2 legacy + 6 attacks (some folded)
    # This descriptor has signed install on: the detail names what strips the header, not the descriptor.
    assert "WSGIPassAuthorization On" in out


def test_an_untrusted_key_server_stops_at_the_first_step_naming_the_variable(live_server, settings):
    port = free_port()
    settings.CONNECT = {**settings.CONNECT, "KEY_SERVERS": ["http://127.0.0.1:9"]}
    out, error = simulate("happy", "--url", live_server.url, "--key-server-port", str(port))
    assert error == (
        "the server never asked this simulator's key server for its key, so it does not trust it: "
        f"restart the server with CONNECT_KEY_SERVERS=http://127.0.0.1:{port}"
    )
    assert len([line for line in out.splitlines() if line.startswith("[FAIL]")]) == 1
    assert not Installation.objects.exists()


def test_unreachable_server_is_a_clear_error():
    _, error = simulate("happy", "--url", f"http://127.0.0.1:{free_port()}", "--key-server-port", "0")
    assert error.startswith("cannot reach the server at http://127.0.0.1:")
    assert "make run" in error
