"""deploy/nginx/connect-app.conf, the proxy README requires, run in front of gunicorn.

Slow clients (headers or body sent a line at a time) tie up every sync worker of a bare
gunicorn, health checks included; behind this nginx configuration they do not, and a genuine
signed webhook passes through unchanged (path, query, Authorization, body). Needs Debian's nginx
(`make test` installs nginx-light); skipped without it. Loopback only, bounded in time.
"""

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from connect_testkit import sign_tenant

ROOT = Path(__file__).resolve().parents[1]
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="needs nginx: make test installs nginx-light")
SECRET = "proxy-test-tenant-secret-0123456789abcdef0123456789"  # a loopback tenant
WORKERS = 2
SLOW_CLIENTS = WORKERS + 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str) -> None:
    for _ in range(200):
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.05)
    pytest.fail(f"nothing answered on {url}")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """gunicorn (two sync workers, SQLite, one installed tenant) and nginx in front of it."""
    folder = tmp_path_factory.mktemp("proxy")
    app_port, proxy_port = _free_port(), _free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "CONNECT_READ_DOTENV": "0",
        "SECRET_KEY": "proxy-test-secret-key-0123456789-abcdefghij",
        "CONNECT_BASE_URL": "https://connect-app.example.test",
        "ALLOWED_HOSTS": "127.0.0.1",
        "TENANT_SECRET_KEYS": "q8Mn2ZQy0E3cdj8B3zZ6m1cJ8vZ0kQ2xN9mVb7a1c3E=",
        "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
        "HOST": "127.0.0.1",
        "PORT": str(app_port),
        "WEB_CONCURRENCY": str(WORKERS),
        "GUNICORN_ACCESS_LOG": "off",
    }
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    install = (
        "from tenants import services; services.install({'clientKey': 'proxy-tenant', 'sharedSecret': "
        f"{SECRET!r}, 'baseUrl': 'https://proxy.atlassian.net', 'key': 'django-connect-app', "
        "'eventType': 'installed'})"
    )
    subprocess.run([*manage, "shell", "-c", install], cwd=ROOT, env=env, check=True, timeout=120)
    (folder / "nginx.conf").write_text(
        # Run as root (CI), nginx's workers would drop to nobody, who cannot write the temp folders here.
        ("user root root;\n" if os.geteuid() == 0 else "")
        + f"""
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/nginx-error.log;
events {{ worker_connections 256; }}
http {{
    include {ROOT}/deploy/nginx/connect-log.conf;
    access_log {folder}/access.log connect_app;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    upstream connect_app {{ server 127.0.0.1:{app_port}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{proxy_port};
        include {ROOT}/deploy/nginx/connect-app.conf;
    }}
}}
"""
    )
    with (folder / "gunicorn.log").open("w") as log:
        gunicorn = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "connectsite.wsgi"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        nginx = subprocess.Popen(
            [NGINX, "-e", str(folder / "error.log"), "-p", str(folder), "-c", str(folder / "nginx.conf")],
            stdout=log,
            stderr=log,
        )
    try:
        app, proxy = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{proxy_port}"
        _wait_for(app + "/healthz")
        _wait_for(proxy + "/healthz")
        yield app, proxy, folder
    finally:
        for process in (nginx, gunicorn):
            process.terminate()
            process.wait(timeout=20)


@contextmanager
def slow_clients(url: str, kind: str):
    """SLOW_CLIENTS connections that send a request a line (or a byte) every 0.5 s until the block ends."""
    host, port = url.removeprefix("http://").split(":")
    stop = threading.Event()

    def drip(sock: socket.socket) -> None:
        try:
            if kind == "headers":
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                while not stop.wait(0.5):
                    sock.sendall(b"X-Slow: 1\r\n")
            else:  # a small lifecycle body (read before any token is checked), a byte at a time
                sock.sendall(
                    b"POST /lifecycle/installed HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                )
                while not stop.wait(0.5):
                    sock.sendall(b" ")
        except OSError:
            pass  # the server gave up on it: fine

    sockets = [socket.create_connection((host, int(port)), timeout=5) for _ in range(SLOW_CLIENTS)]
    threads = [threading.Thread(target=drip, args=(sock,), daemon=True) for sock in sockets]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)  # every connection has started its request
        yield
    finally:
        stop.set()
        for sock in sockets:
            sock.close()
        for thread in threads:
            thread.join(timeout=5)


def _healthz_seconds(url: str) -> float:
    started = time.monotonic()
    response = requests.get(url + "/healthz", timeout=3)
    assert response.status_code == 200
    return time.monotonic() - started


@pytest.mark.parametrize("kind", ["headers", "body"])
def test_slow_clients_tie_up_a_bare_gunicorn(servers, kind):
    """The attack is real: without the proxy, the health check times out."""
    app, _, _ = servers
    with slow_clients(app, kind), pytest.raises(requests.Timeout):
        _healthz_seconds(app)
    _wait_for(app + "/healthz")  # gunicorn recovers once they leave


@pytest.mark.parametrize("kind", ["headers", "body"])
def test_behind_the_recommended_nginx_slow_clients_tie_up_nothing(servers, kind):
    _, proxy, _ = servers
    with slow_clients(proxy, kind):
        # A tied-up gunicorn never answers (the 3 s timeout); nginx answers in well under 2 s.
        assert max(_healthz_seconds(proxy) for _ in range(5)) < 2.0


def test_a_signed_webhook_passes_the_proxy_unchanged(servers):
    _, proxy, _ = servers
    path = "/webhooks/jira:issue_created?user_id=admin&user_key=a%20b"
    token = sign_tenant(SECRET, client_key="proxy-tenant", method="POST", url=path)
    response = requests.post(
        proxy + path,
        data=b'{"issue": {"key": "ABC-1"}}',
        headers={
            "Content-Type": "application/json",
            "Authorization": f"JWT {token}",
            "X-Atlassian-Webhook-Identifier": str(uuid.uuid4()),
        },
        timeout=10,
    )
    assert response.status_code == 204, response.text


def test_a_body_over_the_webhook_limit_gets_the_apps_json_413(servers):
    _, proxy, _ = servers
    response = requests.post(
        proxy + "/webhooks/jira:issue_created",
        data=b'{"blob": "' + b"x" * (5 * 1024 * 1024 + 100) + b'"}',
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413, (response.status_code, response.headers, response.text[:300])
    assert response.json()["error"] == "body_too_large"


def test_the_access_log_never_holds_a_page_token(servers):
    _, proxy, folder = servers
    page = "/pages/hello?xdm_e=https%3A%2F%2Fproxy.atlassian.net&lic=active"
    token = sign_tenant(SECRET, client_key="proxy-tenant", method="GET", url=page, overrides={"sub": "u-1"})
    response = requests.get(f"{proxy}{page}&jwt={token}", timeout=10)
    assert response.status_code == 200, response.text[:300]
    deadline = time.monotonic() + 5
    log = ""
    while time.monotonic() < deadline and "/pages/hello" not in log:
        log = (folder / "access.log").read_text() if (folder / "access.log").exists() else ""
        time.sleep(0.1)
    assert '"GET /pages/hello HTTP/1.1" 200' in log
    assert token not in log and "jwt=" not in log and token.split(".")[2] not in log
