"""Several gunicorn workers on PostgreSQL and Redis behave as one server.

Starts gunicorn (3 workers) on loopback against the test database and a Redis database of its
own, with the loopback key server, then sends parallel traffic. PostgreSQL only (the test
database must be visible to other processes); skipped where Redis is not running.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from django.db import connection

from audit.models import LifecycleEvent
from connect_testkit import sign_install, sign_tenant
from tenants.models import Installation, WebhookDelivery
from tests.conftest import KID, redis_up

ROOT = Path(__file__).resolve().parents[1]
REDIS_DB = 11
AUD = "https://connect-app.example.test"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_gunicorn(env, log_file):
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "connectsite.wsgi"],
        cwd=ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{env['PORT']}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except requests.RequestException:
            time.sleep(0.2)
    process.terminate()
    log_file.seek(0)
    pytest.fail("gunicorn did not start: " + log_file.read()[-2000:])


def _base_env(key_server, **extra):
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CONNECT_", "DJANGO_", "TENANT_"))},
        "DJANGO_SETTINGS_MODULE": "connectsite.settings",
        "CONNECT_READ_DOTENV": "0",
        "DEBUG": "0",
        "SECRET_KEY": os.environ["SECRET_KEY"],
        "TENANT_SECRET_KEYS": os.environ["TENANT_SECRET_KEYS"],
        "CONNECT_BASE_URL": AUD,
        "CONNECT_APP_KEY": "django-connect-app",
        "ALLOWED_HOSTS": "127.0.0.1",
        "CONNECT_KEY_SERVERS": key_server.url,
        "HOST": "127.0.0.1",
        "PORT": str(_free_port()),
        "LOG_LEVEL": "DEBUG",
        "GUNICORN_ACCESS_LOG": "-",
        **extra,
    }


def test_sqlite_copes_with_concurrent_writers_in_several_workers(
    _key_server_session, rsa_key, make_body, tmp_path
):
    """The embedded default: 3 gunicorn workers writing one SQLite file at once."""
    import sqlite3

    key_server = _key_server_session
    key_server.reset()
    key_server.publish(KID, rsa_key)
    env = _base_env(key_server, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", WEB_CONCURRENCY="3")
    env.pop("CACHE_URL", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120
    )
    with (tmp_path / "gunicorn.log").open("w+") as log:
        process, url = _start_gunicorn(env, log)
        try:
            bodies = [make_body(clientKey=f"sqlite-tenant-{i % 4}") for i in range(16)]
            # One issue time for all: a token issued a second before another for the same
            # tenant is refused as stale (stale_lifecycle_token) when the later one wins the race.
            issued = time.time()

            def install(i):
                token = sign_install(
                    rsa_key, kid=KID, client_key=bodies[i]["clientKey"], audience=AUD, now=issued
                )
                return _post(url, "/lifecycle/installed", bodies[i], token).status_code

            assert _parallel(16, install) == [204] * 16
        finally:
            process.terminate()
            process.wait(timeout=30)
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM tenants_installation").fetchone()[0] == 4
        assert (
            db.execute("SELECT COUNT(*) FROM tenants_lifecycleevent WHERE outcome = 'accepted'").fetchone()[0]
            == 16
        )


@pytest.fixture
def gunicorn(key_server, tmp_path):
    yield from _serve(key_server, tmp_path)


def _serve(key_server, tmp_path, **extra):
    """3 gunicorn workers on the test database (PostgreSQL) and Redis; yields (url, log path)."""
    if not redis_up():
        pytest.skip("needs Redis on 127.0.0.1:6379 (.ci/run starts it)")
    import redis

    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()
    db = connection.settings_dict
    env = _base_env(
        key_server,
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        CACHE_URL=f"redis://127.0.0.1:6379/{REDIS_DB}",
        WEB_CONCURRENCY="3",
        **extra,
    )
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    with (tmp_path / "gunicorn.log").open("w+") as log:
        process, url = _start_gunicorn(env, log)
        yield url, tmp_path / "gunicorn.log"
        process.terminate()
        process.wait(timeout=30)


def _post(url, path, body, token, headers=None):
    return requests.post(
        url + path,
        data=json.dumps(body),
        headers={"Content-Type": "application/json", "Authorization": f"JWT {token}", **(headers or {})},
        timeout=30,
    )


def _parallel(count, call):
    barrier = threading.Barrier(count)

    def run(i):
        barrier.wait(timeout=10)
        return call(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_workers_share_database_cache_and_key(gunicorn, rsa_key, make_body, key_server):
    url, log_path = gunicorn
    secret = "multiprocess-secret-0123456789abcdef0123456789"
    body = make_body(clientKey="multi-tenant", sharedSecret=secret)

    # Parallel installs of one tenant across workers: one row; the key is fetched once for all.
    issued = time.time()  # one issue time: an earlier-issued token losing the race would be stale

    def install(i):
        token = sign_install(
            rsa_key, kid=KID, client_key="multi-tenant", audience=AUD, overrides={"jti": str(i)}, now=issued
        )
        return _post(url, "/lifecycle/installed", body, token).status_code

    assert _parallel(12, install) == [204] * 12
    assert Installation.objects.filter(client_key="multi-tenant").count() == 1
    assert key_server.requests == ["/" + KID], log_path.read_text()[-3000:]

    # The same token with a swapped body is refused on whichever worker it lands.
    token = sign_install(
        rsa_key, kid=KID, client_key="multi-tenant", audience=AUD, overrides={"jti": "replayed"}
    )
    assert _post(url, "/lifecycle/installed", body, token).status_code == 204
    forged = {**body, "sharedSecret": "attacker-secret-0123456789abcdef0123456789"}
    replies = _parallel(9, lambda i: _post(url, "/lifecycle/installed", forged, token))
    assert {(r.status_code, r.json()["error"]) for r in replies} == {(401, "replay_body_mismatch")}
    assert Installation.objects.get(client_key="multi-tenant").reveal_shared_secret() == secret

    # One webhook identifier delivered to every worker at once is processed once.
    hook = "/webhooks/jira:issue_created?issueKey=MP-1"

    def deliver(i):
        token = sign_tenant(secret, client_key="multi-tenant", method="POST", url=hook)
        return _post(url, hook, {"issue": {"key": "MP-1"}}, token, {"X-Atlassian-Webhook-Identifier": "mp-1"})

    assert {r.status_code for r in _parallel(12, deliver)} == {204}
    assert WebhookDelivery.objects.filter(identifier="mp-1").count() == 1

    # Static admin files come from whitenoise; nothing else of the project folder is served.
    assert requests.get(f"{url}/static/admin/css/base.css", timeout=10).status_code == 200
    assert requests.get(f"{url}/manage.py", timeout=10).status_code == 404

    # Nothing the workers logged holds a token, a secret or a body.
    logged = log_path.read_text()
    assert "installed accepted" in logged
    for needle in (secret, "attacker-secret", token, '"sharedSecret"', 'MP-1"}'):
        assert needle not in logged
    assert LifecycleEvent.objects.filter(reason="replay_body_mismatch").count() == 9


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_every_worker_honours_a_tenant_change_made_elsewhere_on_its_next_webhook(gunicorn, make_body):
    """Each worker remembers verified tenants (tenants/tenant_cache.py); a change made by another
    process (here the test's own, as admin or another worker would) must stop all of them."""
    from tenants import services

    url, log_path = gunicorn
    hook = "/webhooks/jira:issue_created"
    old, new = "cached-secret-0123456789abcdef0123456789ab", "reinstalled-secret-0123456789abcdef012345"
    services.install(make_body(clientKey="cached-tenant", sharedSecret=old))

    def deliver(secret, prefix):
        def send(i):
            token = sign_tenant(
                secret, client_key="cached-tenant", method="POST", url=hook, now=time.time() - i
            )
            headers = {"X-Atlassian-Webhook-Identifier": f"{prefix}-{i}"}
            return _post(url, hook, {"issue": {"key": "C-1"}}, token, headers).status_code

        return _parallel(24, send)  # 24 at once over 3 workers: each serves several

    assert deliver(old, "warm") == [204] * 24  # every worker now remembers the tenant and its secret
    services.uninstall("cached-tenant")
    assert deliver(old, "after-uninstall") == [401] * 24
    services.install(make_body(clientKey="cached-tenant", sharedSecret=new))
    assert deliver(new, "new-secret") == [204] * 24
    assert deliver(old, "old-secret") == [401] * 24
    Installation.objects.filter(client_key="cached-tenant").update(suspended=True)
    assert deliver(new, "suspended") == [403] * 24
    stored = set(WebhookDelivery.objects.values_list("identifier", flat=True))
    assert {i.split("-")[0] for i in stored} == {"warm", "new"} and len(stored) == 48
    assert old not in log_path.read_text() and new not in log_path.read_text()


@pytest.mark.postgres
def test_check_deploy_is_clean_with_production_settings():
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CONNECT_", "DJANGO_", "TENANT_", "SECURE_"))
        },
        "CONNECT_READ_DOTENV": "0",
        "DJANGO_SETTINGS_MODULE": "connectsite.settings",
        "DEBUG": "0",
        "SECRET_KEY": "a-long-random-production-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
        "CONNECT_BASE_URL": "https://app.example.com",
        "ALLOWED_HOSTS": "app.example.com",
        "TENANT_SECRET_KEYS": os.environ["TENANT_SECRET_KEYS"],
        "CACHE_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "SECURE_SSL_REDIRECT": "on",
        "SECURE_PROXY_SSL_HEADER": "on",
        "SECURE_HSTS_SECONDS": "31536000",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": "on",
        "SECURE_HSTS_PRELOAD": "on",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


# --- Webhook deliveries, at least once, with real processes dying (issue 15) ---------------------


def _worker_env(tmp_path, **extra):
    db = connection.settings_dict
    return _base_env(
        _NoKeyServer(),
        DJANGO_SETTINGS_MODULE="tests.worker_settings",
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        RECEIVER_LOG=str(tmp_path / "receivers.log"),
        TENANT_WEBHOOK_PROCESSING_TIMEOUT="5",  # its watchdog looks 10 s after an attempt starts
        TENANT_WEBHOOK_RETRY_DELAY="0",
        **extra,
    )


class _NoKeyServer:
    url = "http://127.0.0.1:9"


def _start_worker(env, log_file):
    return subprocess.Popen(
        [sys.executable, "manage.py", "db_worker", "--interval", "0.1", "--no-reload", "--no-startup-delay"],
        cwd=ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )


def _wait_for(condition, seconds=60, what="a condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def _receiver_lines(tmp_path):
    path = tmp_path / "receivers.log"
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_task_worker_killed_mid_task_loses_nothing(make_body, tmp_path):
    from tenants import deliveries, services

    installation = services.install(make_body(clientKey="worker-kill")).installation
    deliveries.record_webhook(
        installation, event="test:hang", identifier="hang-1", retry_count=0, raw_body="{}"
    )
    env = _worker_env(tmp_path)
    with (tmp_path / "worker.log").open("w+") as log:
        first = _start_worker(env, log)
        try:
            _wait_for(lambda: "hang-1 1 start" in _receiver_lines(tmp_path), what="the first attempt")
            first.kill()  # SIGKILL mid-task: no chance to clean up
            first.wait(timeout=30)
            assert WebhookDelivery.objects.get(identifier="hang-1").state == "processing"
            second = _start_worker(env, log)
            try:
                _wait_for(
                    lambda: WebhookDelivery.objects.get(identifier="hang-1").state == "done",
                    what="the delivery to be given back and processed",
                )
            finally:
                second.terminate()
                second.wait(timeout=30)
        finally:
            first.kill()
    delivery = WebhookDelivery.objects.get(identifier="hang-1")
    assert (delivery.attempts, delivery.error_type) == (2, "")  # done clears the last error
    assert "never ended; its worker is presumed dead" in (tmp_path / "worker.log").read_text()
    assert _receiver_lines(tmp_path) == ["hang-1 1 start", "hang-1 2 start", "hang-1 2 end"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("locked", ["tenants_webhookdelivery", "django_tasks_database_dbtaskresult"])
def test_a_web_worker_killed_while_storing_leaves_no_half_delivery(locked, make_body, tmp_path, key_server):
    """The issue's reproduction: a table lock holds the delivery's transaction open, the web worker
    is killed, and Jira's retry is then processed exactly once (before, a row stayed with no signal)."""
    import psycopg

    from tenants import services

    if not redis_up():
        pytest.skip("needs Redis on 127.0.0.1:6379 (.ci/run starts it)")
    secret = "worker-kill-secret-0123456789abcdef0123456789"
    services.install(make_body(clientKey="web-kill", sharedSecret=secret))
    env = _worker_env(tmp_path, WEB_CONCURRENCY="1", CACHE_URL=f"redis://127.0.0.1:6379/{REDIS_DB}")
    db = connection.settings_dict
    hook = "/webhooks/jira:issue_created"
    body = {"webhookEvent": "jira:issue_created"}
    with (tmp_path / "gunicorn.log").open("w+") as log:
        server, url = _start_gunicorn(env, log)
        try:
            worker_pid = int(
                subprocess.run(
                    ["pgrep", "-P", str(server.pid)], capture_output=True, text=True
                ).stdout.split()[0]
            )
            with psycopg.connect(
                f"host={db['HOST']} port={db['PORT']} user={db['USER']} dbname={db['NAME']}"
            ) as lock:
                lock.execute(f"LOCK TABLE {locked} IN SHARE MODE")  # held until this block ends
                token = sign_tenant(secret, client_key="web-kill", method="POST", url=hook)
                sent = threading.Thread(
                    target=lambda: _swallow(
                        lambda: _post(url, hook, body, token, {"X-Atlassian-Webhook-Identifier": "x-1"})
                    )
                )
                sent.start()
                _wait_for(lambda: _waiting_on_lock(lock), seconds=30, what="the insert to wait on the lock")
                os.kill(worker_pid, 9)
                sent.join(timeout=30)
                lock.rollback()
            assert not WebhookDelivery.objects.filter(identifier="x-1").exists()  # rolled back whole
            _wait_for(
                lambda: requests.get(f"{url}/healthz", timeout=1).status_code == 200, what="a new worker"
            )
            token = sign_tenant(secret, client_key="web-kill", method="POST", url=hook)
            retry = {"X-Atlassian-Webhook-Identifier": "x-1", "X-Atlassian-Webhook-Retry": "1"}
            assert _post(url, hook, body, token, retry).status_code == 204
            assert _post(url, hook, body, token, retry).status_code == 204  # and again
        finally:
            server.terminate()
            server.wait(timeout=30)
    with (tmp_path / "worker.log").open("w+") as log:
        worker = _start_worker(env, log)
        try:
            _wait_for(
                lambda: WebhookDelivery.objects.get(identifier="x-1").state == "done", what="processing"
            )
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    assert _receiver_lines(tmp_path) == ["x-1 1 start", "x-1 1 end"]  # processed exactly once


def _swallow(call):
    try:
        call()
    except requests.RequestException:
        pass  # the worker serving it was killed


def _waiting_on_lock(lock):
    row = lock.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()
    return bool(row and row[0])


@pytest.fixture
def forge_gunicorn(key_server, rsa_key, tmp_path):
    """3 workers with the Forge routes on, trusting the loopback key server's JWKS."""
    from connect_testkit import FORGE_APP_ID
    from tests.conftest import FORGE_KID

    key_server.publish_jwk(FORGE_KID, rsa_key)
    yield from _serve(key_server, tmp_path, FORGE_APP_ID=FORGE_APP_ID, FORGE_JWKS_URL=key_server.jwks_url)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_forge_calls_across_workers_share_the_jwks_the_replay_guard_and_the_dedupe(
    forge_gunicorn, rsa_key, key_server
):
    import uuid

    from connect_testkit import forge_event, sign_fit
    from tenants.models import ForgeInstallation, WebhookDelivery
    from tests.conftest import FORGE_KID

    url, _log = forge_gunicorn

    def post(token, body):
        return requests.post(
            url + "/forge/events",
            data=json.dumps(body),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            timeout=30,
        )

    def jwks_fetches():
        return sum(path.endswith("jwks.json") for path in key_server.requests)

    # 12 first events in parallel over 3 workers: one JWKS fetch for all, one installation.
    statuses = _parallel(
        12, lambda i: post(sign_fit(rsa_key, kid=FORGE_KID), forge_event("e:x", n=i)).status_code
    )
    assert statuses == [204] * 12
    assert jwks_fetches() == 1
    assert ForgeInstallation.objects.count() == 1
    # 8 parallel retries of an event whose first attempt never arrived: stored once.
    retry = forge_event("e:y", retry_count=1, n="retried")
    assert _parallel(8, lambda i: post(sign_fit(rsa_key, kid=FORGE_KID), retry).status_code) == [204] * 8
    assert WebhookDelivery.objects.filter(event="e:y").count() == 1
    # A flood of made-up kids on every worker: at most one more fetch (once per minute for all).
    flood = _parallel(
        24,
        lambda i: post(sign_fit(rsa_key, kid=f"forge/invocation-token/wf-{uuid.uuid4()}"), retry).status_code,
    )
    assert flood == [401] * 24
    assert jwks_fetches() <= 2
    # A FIT already used, replayed on any worker with another body: refused.
    token = sign_fit(rsa_key, kid=FORGE_KID)
    assert post(token, forge_event("e:z", n=1)).status_code == 204
    assert _parallel(6, lambda i: post(token, forge_event("e:z", n=100 + i)).status_code) == [401] * 6
