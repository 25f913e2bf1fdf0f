"""Shared fixtures: lifecycle bodies, a database-vendor guard."""

from __future__ import annotations

import socket
import uuid

import pytest
from django.db import connection


def redis_up() -> bool:
    """Whether Redis answers PING on 127.0.0.1:6379 (``.ci/run`` starts it; tests that need it skip)."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def pytest_collection_modifyitems(config, items):
    if connection.vendor == "postgresql":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: run with DATABASE_URL=postgres://... (make test does)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test starts with an empty Django cache (the dashboard, fetch counters, replay guard),
    an empty per-process tenant cache and no watchdog window armed (their rows are rolled back
    with each test)."""
    from django.core.cache import cache

    from tenants import deliveries
    from tenants.tenant_cache import tenant_cache

    cache.clear()
    tenant_cache.clear()
    deliveries._armed.clear()
    yield


@pytest.fixture
def make_body():
    """A lifecycle body as Jira sends it; keyword arguments override fields."""

    def _make(event_type: str = "installed", **overrides):
        body = {
            "key": "django-connect-app",
            "clientKey": overrides.pop("clientKey", f"client-{uuid.uuid4()}"),
            "publicKey": "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA",
            "sharedSecret": "shared-secret-" + uuid.uuid4().hex,
            "serverVersion": "100",
            "pluginsVersion": "1000.0.0",
            "baseUrl": "https://example-site.atlassian.net",
            "displayUrl": "https://example-site.atlassian.net",
            "productType": "jira",
            "description": "Atlassian JIRA at https://example-site.atlassian.net",
            "serviceEntitlementNumber": "SEN-1234",
            "entitlementId": "e-1",
            "entitlementNumber": "E-1",
            "oauthClientId": "oauth-1",
            "eventType": event_type,
        }
        if event_type != "installed":
            body.pop("sharedSecret")
        body.update(overrides)
        return body

    return _make


# --- Playing Atlassian: RSA keys, a loopback key server, signed lifecycle requests -------------

KID = "9b4a6f1e-3c2d-4e5f-8a7b-0c1d2e3f4a5b"


@pytest.fixture(scope="session")
def rsa_key():
    from connect_testkit import generate_rsa_key

    return generate_rsa_key()


@pytest.fixture(scope="session")
def other_rsa_key():
    from connect_testkit import generate_rsa_key

    return generate_rsa_key()


@pytest.fixture(scope="session")
def _key_server_session():
    from connect_testkit import KeyServer

    server = KeyServer().start()
    yield server
    server.stop()


@pytest.fixture
def key_server(_key_server_session, rsa_key, settings):
    """The loopback key server, trusted through CONNECT_KEY_SERVERS, publishing KID -> rsa_key."""
    from django.core.cache import cache

    from lifecycle.keys import provider

    server = _key_server_session
    server.reset()
    server.publish(KID, rsa_key)
    # Generous fetch limits: the tests that are about them set their own.
    settings.CONNECT = {
        **settings.CONNECT,
        "KEY_SERVERS": [server.url],
        "KEY_FETCH_RATE_PER_SOURCE": "1000/m",
        "KEY_FETCH_RATE": "1000/m",
    }
    provider.clear()
    provider.fetch_count = 0
    cache.clear()
    yield server
    server.reset()
    provider.clear()
    cache.clear()


@pytest.fixture
def lifecycle_call(client, key_server, rsa_key, make_body, settings):
    """POST a lifecycle callback the way Jira does; keyword arguments bend any part of it."""
    import json

    from connect_testkit import sign_install

    def _call(
        event="installed",
        body=None,
        *,
        token=None,
        authorization=None,
        key=None,
        kid=KID,
        path=None,
        content_type="application/json",
        raw=None,
        **sign,
    ):
        body = make_body(event) if body is None else body
        path = path or f"/lifecycle/{event}"
        if token is None and authorization is None:
            sign.setdefault(
                "client_key", body.get("clientKey", "nobody") if isinstance(body, dict) else "nobody"
            )
            sign.setdefault("audience", settings.CONNECT["BASE_URL"])
            sign.setdefault("url", path)
            token = sign_install(key or rsa_key, kid=kid, **sign)
        if authorization is None:
            authorization = f"JWT {token}"
        data = raw if raw is not None else json.dumps(body)
        extra = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
        response = client.post(path, data=data, content_type=content_type, **extra)
        response.token = token
        response.sent_body = body
        return response

    return _call


TENANT_KEY = "tenant-client-key"
TENANT_SECRET = "tenant-shared-secret-0123456789abcdef0123456789abcdef"


@pytest.fixture
def tenant(db, make_body):
    """An installed, enabled tenant with a known sharedSecret."""
    from tenants import services

    services.install(make_body(clientKey=TENANT_KEY, sharedSecret=TENANT_SECRET))
    services.enable(TENANT_KEY)
    from tenants.models import Installation

    return Installation.objects.get(client_key=TENANT_KEY)


@pytest.fixture
def tenant_call(client, settings):
    """Send a tenant-signed (HS256) call the way Jira does; keyword arguments bend any part of it."""
    import json

    from connect_testkit import sign_tenant

    def _call(
        path,
        body=None,
        *,
        secret=TENANT_SECRET,
        client_key=TENANT_KEY,
        token=None,
        authorization=None,
        method="POST",
        headers=None,
        content_type="application/json",
        raw=None,
        **sign,
    ):
        if token is None and authorization is None:
            sign.setdefault("url", path)
            sign.setdefault("method", method)
            token = sign_tenant(secret, client_key=client_key, **sign)
        if authorization is None:
            authorization = f"JWT {token}"
        extra = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
        for name, value in (headers or {}).items():
            extra["HTTP_" + name.upper().replace("-", "_")] = value
        data = raw if raw is not None else json.dumps({} if body is None else body)
        response = client.generic(method, path, data=data, content_type=content_type, **extra)
        response.token = token
        return response

    return _call


@pytest.fixture
def operator(client, db):
    """A superuser, logged in on ``client``."""
    from django.contrib.auth.models import User

    user = User.objects.create_superuser("operator", "op@example.com", "pw")
    client.force_login(user)
    return user


@pytest.fixture
def run_tasks():
    """``run_tasks()``: ``connect_testkit.tasks.run_due_tasks``, the real worker on the test
    database; returns how many task rows are left unfinished."""
    from connect_testkit.tasks import run_due_tasks

    return run_due_tasks


# --- Playing Forge: a JWKS on the loopback key server, FITs signed with its key ----------------

FORGE_KID = "forge/invocation-token/wf-6c1b7e2a-9d3f-4a5b-8c7d-1e2f3a4b5c6d"


@pytest.fixture
def forge(_key_server_session, rsa_key, settings):
    """Forge routes on (FORGE_APP_ID = the test kit's), the JWKS on the loopback key server
    publishing FORGE_KID -> rsa_key; ``forge.sign(**kw)`` makes a FIT, ``forge.server`` is the server."""
    import types

    from django.core.cache import cache

    from connect_testkit import FORGE_APP_ID, sign_fit
    from lifecycle.jwks import provider

    server = _key_server_session
    server.reset()
    server.publish_jwk(FORGE_KID, rsa_key)
    settings.CONNECT = {**settings.CONNECT, "FORGE_APP_ID": FORGE_APP_ID, "FORGE_JWKS_URL": server.jwks_url}
    provider.clear()
    provider.fetch_count = 0
    cache.clear()

    def sign(**overrides):
        return sign_fit(overrides.pop("key", rsa_key), kid=overrides.pop("kid", FORGE_KID), **overrides)

    yield types.SimpleNamespace(server=server, sign=sign, app_id=FORGE_APP_ID, kid=FORGE_KID)
    server.reset()
    provider.clear()
    cache.clear()
