"""connectsite/middleware.py: a load balancer's /healthz probe by IP over plain http is answered,
while every other route keeps the host check and the https redirect. On the server we ship."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def production_rules(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["connect-app.example.test"]


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "head"])
def test_a_probe_by_ip_over_plain_http_gets_the_health_answer(client, production_rules, method):
    response = getattr(client, method)("/healthz", HTTP_HOST="10.0.0.5")
    assert response.status_code == 200
    if method == "get":
        assert response.json() == {"status": "ok", "database": "ok"}


@pytest.mark.django_db
def test_every_other_route_keeps_the_host_check_and_the_https_redirect(client, production_rules):
    assert client.get("/atlassian-connect.json", HTTP_HOST="10.0.0.5").status_code == 400
    assert client.post("/healthz", HTTP_HOST="10.0.0.5").status_code == 400
    redirect = client.get("/atlassian-connect.json", HTTP_HOST="connect-app.example.test")
    assert (redirect.status_code, redirect["Location"]) == (
        301,
        "https://connect-app.example.test/atlassian-connect.json",
    )
    assert client.get("/admin/login/", HTTP_HOST="10.0.0.5").status_code == 400


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_on_gunicorn_the_probe_passes_and_a_bad_host_logs_one_warning_line(tmp_path):
    port = _free_port()
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "connectsite.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'health.sqlite3'}",
        "SECURE_SSL_REDIRECT": "on",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "GUNICORN_ACCESS_LOG": "off",
    }
    log = tmp_path / "server.log"
    with log.open("w") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "connectsite.wsgi"],
            cwd=ROOT,
            env=environment,
            stdout=sink,
            stderr=sink,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        probe = None
        for _ in range(100):
            try:
                probe = requests.get(f"{url}/healthz", headers={"Host": "10.0.0.5"}, timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert probe is not None, "gunicorn did not answer within 10 s"
        assert (probe.status_code, probe.json()["status"]) == (200, "ok")
        head = requests.head(f"{url}/healthz", headers={"Host": "10.0.0.5"}, timeout=2)
        assert (head.status_code, head.content) == (200, b"")
        for _ in range(3):
            stray = requests.get(
                f"{url}/atlassian-connect.json", headers={"Host": "scanner.example"}, timeout=2
            )
            assert stray.status_code == 400
        redirected = requests.get(
            f"{url}/atlassian-connect.json",
            headers={"Host": "connect-app.example.test"},
            allow_redirects=False,
            timeout=2,
        )
        assert redirected.status_code == 301
    finally:
        server.terminate()
        server.wait(timeout=20)
    text = log.read_text()
    assert "Traceback" not in text
    assert "body bytes on a no-body response" not in text  # HEAD is answered without a body
    lines = [line for line in text.splitlines() if "Invalid HTTP_HOST header" in line]
    assert len(lines) == 3, text[-3000:]
    assert all(" WARNING django.security.DisallowedHost " in line for line in lines)


def test_log_lines_escape_control_characters_from_requests():
    """connectsite/logs.py: a value with a newline or an ESC stays on its one line, visibly."""
    import logging

    from connectsite.logs import SafeFormatter

    formatter = SafeFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord(
        "lifecycle", logging.WARNING, __file__, 1, "webhook %s", ("a\nERROR forged\x1b[2J",), None
    )
    assert formatter.format(record) == "WARNING webhook a\\x0aERROR forged\\x1b[2J"


def test_a_traceback_quoting_a_request_value_cannot_forge_a_record():
    import logging
    import sys

    from connectsite.logs import SafeFormatter

    try:
        raise ValueError("bad kid 'x\n2026-11-29 23:59:59,000 ERROR lifecycle.keys FORGED\x1b[2J'")
    except ValueError:
        info = sys.exc_info()
    record = logging.LogRecord("lifecycle", logging.ERROR, __file__, 1, "failed", (), info)
    lines = SafeFormatter("%(levelname)s %(message)s").format(record).split("\n")
    assert lines[0] == "ERROR failed"
    assert all(line.startswith("  ") for line in lines[1:])  # no line starts like a record
    assert "\x1b" not in "\n".join(lines)


# --- CSPMiddleware: django-csp's, skipping responses without a body -----------------------------


@pytest.mark.django_db
def test_bodiless_responses_carry_no_policy_and_documents_keep_theirs(tenant, tenant_call):
    from django.test import Client

    hook = tenant_call("/webhooks/jira:issue_created", {"webhookEvent": "jira:issue_created"})
    assert hook.status_code == 204 and "Content-Security-Policy" not in hook
    refused = tenant_call("/webhooks/jira:issue_created", {}, secret="wrong-secret-0123456789abcdef0123")
    assert refused.status_code == 401
    assert refused["Content-Security-Policy"] == "frame-ancestors 'none'"
    admin = Client().get("/admin/login/")
    assert admin.status_code == 200 and admin["Content-Security-Policy"] == "frame-ancestors 'none'"
