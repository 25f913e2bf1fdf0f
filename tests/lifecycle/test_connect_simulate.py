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


def simulated_jira(settings, port):
    """What settings.py derives from DEBUG=1 and CONNECT_SIMULATED_JIRA."""
    origin = f"http://127.0.0.1:{port}"
    settings.DEBUG = True
    settings.CONNECT = {
        **settings.CONNECT,
        "SIMULATED_JIRA": origin,
        "OAUTH_TOKEN_URL": f"{origin}/oauth2/token",
    }


def test_all_scenarios_pass_against_a_live_server(live_server, settings):
    port, jira_port = free_port(), free_port()
    settings.CONNECT = {**settings.CONNECT, "KEY_SERVERS": [f"http://127.0.0.1:{port}"]}
    simulated_jira(settings, jira_port)
    out, error = simulate(
        "all", "--url", live_server.url, "--key-server-port", str(port), "--jira-port", str(jira_port)
    )
    assert error is None, out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == 36
    assert all(line.startswith("[ok  ]") for line in lines)
    assert out.rstrip().endswith("36 passed, 0 failed")
    expected = {
        ("happy", "installed (signed install, RS256)"): "-> 204",
        ("legacy", "first install without a JWT"): "-> 401 signed_install_required",
        ("attacks", "forged reinstall signed by another key"): "-> 401 bad_signature",
        ("attacks", "token issued for another app (aud)"): "-> 401 audience_mismatch",
        ("attacks", "token for another URL (qsh)"): "-> 401 qsh_mismatch",
        ("attacks", "hostile kid (path traversal)"): "-> 401 invalid_kid",
        ("attacks", "webhook signed with a guessed secret"): "-> 401 invalid_token",
        ("pages", "page load (?jwt=, qsh of this GET)"): "-> 200",
        ("pages", "context call from the page (context-qsh)"): "-> 200",
        ("pages", "page token sent on to the context route"): "-> 401 qsh_mismatch",
        ("pages", "context token on the page route"): "-> 401 context_qsh_not_allowed",
        ("outbound", "as the user: JWT bearer grant, then myself"): "-> 200",
        ("outbound", "Jira answers 429 Retry-After: 1, retried"): "-> 200",
        ("outbound", "the new secret is used at once"): "-> 200",
    }
    for (scenario, name), outcome in expected.items():
        assert any(scenario in line and name in line and line.endswith(outcome) for line in lines), name
    # What the server stored: four tenants installed and uninstalled, one webhook delivery.
    assert Installation.objects.filter(state="uninstalled").count() == 4
    assert WebhookDelivery.objects.count() == 1
    rejected = LifecycleEvent.objects.filter(outcome="rejected")
    # 2 legacy + 6 attacks + 7 pages + 2 outbound (some folded)
    assert sum(rejected.values_list("count", flat=True)) == 17
    assert "page token loads its page only" in out  # the detail that names the page's request
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


def test_without_the_simulated_jira_the_page_scenarios_say_what_to_set(live_server, settings):
    port, jira_port = free_port(), free_port()
    settings.CONNECT = {**settings.CONNECT, "KEY_SERVERS": [f"http://127.0.0.1:{port}"]}
    out, error = simulate(
        "pages", "--url", live_server.url, "--key-server-port", str(port), "--jira-port", str(jira_port)
    )
    assert error == (
        f"the server refused a tenant on the fake Jira site http://127.0.0.1:{jira_port}: restart it "
        f"with DEBUG=1 and CONNECT_SIMULATED_JIRA=http://127.0.0.1:{jira_port}"
    )
    assert [line for line in out.splitlines() if line.startswith("[")][-1].endswith(
        "-> 403 tenant_host_not_allowed  (expected 204)"
    )
    assert not Installation.objects.exists()


def test_a_server_that_answers_400_is_said_to_refuse_the_host_not_to_be_unreachable(live_server, settings):
    settings.ALLOWED_HOSTS = ["old-tunnel.example.com"]  # a stale ALLOWED_HOSTS
    _, error = simulate("happy", "--url", live_server.url, "--key-server-port", str(free_port()))
    assert error.startswith(f"the server at {live_server.url} answered 400 to GET /atlassian-connect.json")
    assert "ALLOWED_HOSTS" in error


def test_the_forge_scenario_passes_against_a_live_server(live_server, settings):
    from connect_testkit import FORGE_APP_ID
    from lifecycle.jwks import provider
    from tenants.models import ForgeInstallation

    port = free_port()
    settings.CONNECT = {
        **settings.CONNECT,
        "FORGE_APP_ID": FORGE_APP_ID,
        "FORGE_JWKS_URL": f"http://127.0.0.1:{port}/.well-known/jwks.json",
    }
    provider.clear()
    out, error = simulate("forge", "--url", live_server.url, "--key-server-port", str(port))
    assert error is None, out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == 11 and all(line.startswith("[ok  ]") for line in lines), out
    assert any("30 made-up kids" in line and line.endswith("-> 401 invalid_token") for line in lines)
    assert any("UI call" in line and line.endswith("-> 200") for line in lines)
    installation = ForgeInstallation.objects.get()
    # Lifecycle, product event (its retry folded), scheduled trigger: three deliveries.
    assert WebhookDelivery.objects.filter(forge_installation=installation).count() == 3
    reasons = set(LifecycleEvent.objects.filter(outcome="rejected").values_list("reason", flat=True))
    assert reasons == {
        "forge_bad_signature",
        "forge_audience_mismatch",
        "forge_token_expired",
        "forge_unsupported_algorithm",
        "forge_token_missing",
        "forge_unknown_kid",
    }


def test_the_forge_scenario_says_what_to_set_on_a_server_without_forge(live_server, settings):
    port = free_port()
    settings.CONNECT = {**settings.CONNECT, "FORGE_APP_ID": ""}
    _out, error = simulate("forge", "--url", live_server.url, "--key-server-port", str(port))
    assert error.startswith("the server answered forge_not_configured: restart it with FORGE_APP_ID=ari:")
    assert f"FORGE_JWKS_URL=http://127.0.0.1:{port}/.well-known/jwks.json" in error
