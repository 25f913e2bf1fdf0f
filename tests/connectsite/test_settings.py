"""connectsite/settings.py: every variable of SPEC section 2, its default, and start-up failures."""

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "connectsite" / "settings.py"
VARIABLES = [
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "DATABASE_URL",
    "CACHE_URL",
    "SECURE_SSL_REDIRECT",
    "CONNECT_BASE_URL",
    "CONNECT_APP_KEY",
    "CONNECT_EXTRA_AUDIENCES",
    "CONNECT_KEY_SERVERS",
    "CONNECT_TENANT_HOSTS",
    "CONNECT_JWT_LEEWAY",
    "CONNECT_JWT_MAX_LIFETIME",
    "CONNECT_KEY_TTL",
    "CONNECT_SIMULATED_JIRA",
    "TENANT_SECRET_KEYS",
    "LOG_LEVEL",
    "DATABASE_CONN_MAX_AGE",
    "DATABASE_CONN_HEALTH_CHECKS",
    "CONNECT_WEBHOOK_MAX_BODY",
    "CONNECT_WEBHOOK_MAX_JSON_VALUES",
    "TENANT_STORE_WEBHOOK_BODIES",
    "TENANT_WEBHOOK_RETENTION_DAYS",
    "TENANT_EVENT_RETENTION_DAYS",
    "TENANT_WEBHOOK_MAX_ATTEMPTS",
    "TENANT_WEBHOOK_RETRY_DELAY",
    "TENANT_WEBHOOK_PROCESSING_TIMEOUT",
    "TENANT_VERIFY_CACHE_SIZE",
    "TASKS_RQ_URL",
    "FORGE_APP_ID",
    "FORGE_JWKS_URL",
    "FORGE_JWT_MAX_LIFETIME",
    "FORGE_JWKS_TTL",
    "FORGE_EVENT_MAX_BODY",
    "FORGE_EVENT_DEDUPE_WINDOW",
]
KEY = "q8Mn2ZQy0E3cdj8B3zZ6m1cJ8vZ0kQ2xN9mVb7a1c3E="
PRODUCTION = {
    "SECRET_KEY": "a-production-secret-key-0123456789",
    "CONNECT_BASE_URL": "https://app.example.com",
    "TENANT_SECRET_KEYS": KEY,
}


@pytest.fixture
def load(monkeypatch):
    """Evaluate settings.py afresh under exactly the given environment."""

    def _load(**environment):
        for name in VARIABLES:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("CONNECT_READ_DOTENV", "0")
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        return runpy.run_path(str(SETTINGS))

    return _load


def test_debug_defaults_apply_without_any_variable(load):
    s = load(DEBUG="1")
    assert s["DEBUG"] is True
    assert s["ALLOWED_HOSTS"] == ["localhost", "127.0.0.1"]
    assert s["DATABASES"]["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert s["DATABASES"]["default"]["NAME"] == str(ROOT / "db.sqlite3")
    assert s["CACHES"]["default"]["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"
    assert s["SECURE_SSL_REDIRECT"] is False
    connect = s["CONNECT"]
    assert connect["BASE_URL"] == "http://localhost:8000"
    assert connect["APP_KEY"] == "django-connect-app"  # from atlassian-connect.json
    assert connect["EXTRA_AUDIENCES"] == []
    assert connect["KEY_SERVERS"] == [
        "https://asap-distribution.us-west-2.prod.atl-asap.net",
        "https://connect-install-keys.atlassian.com",
    ]
    assert connect["TENANT_HOSTS"] == [".atlassian.net", ".jira.com"]
    assert (connect["JWT_LEEWAY"], connect["JWT_MAX_LIFETIME"], connect["KEY_TTL"]) == (30, 3600, 86400)
    assert s["TENANTS"] == {
        "SECRET_KEYS": [],
        "DERIVE_DEVELOPMENT_KEY": True,
        "STORE_WEBHOOK_BODIES": False,
        "WEBHOOK_MAX_ATTEMPTS": 8,
        "WEBHOOK_RETRY_DELAY": 30,
        "WEBHOOK_PROCESSING_TIMEOUT": 600,
        "VERIFY_CACHE_SIZE": 1000,
        "WEBHOOK_RETENTION_DAYS": 30,
        "EVENT_RETENTION_DAYS": 365,
    }
    assert connect["WEBHOOK_MAX_BODY"] == 5 * 1024 * 1024
    assert s["TASKS"] == {"default": {"BACKEND": "tenants.task_backend.DatabaseBackend"}}  # same transaction


def test_the_base_url_host_is_always_allowed_and_allowed_hosts_names_extra_hosts(load):
    s = load(
        **{**PRODUCTION, "CONNECT_BASE_URL": "https://connect-app.example.test/"},
        ALLOWED_HOSTS="127.0.0.1,localhost",
    )
    assert s["ALLOWED_HOSTS"] == ["127.0.0.1", "localhost", "connect-app.example.test"]
    s = load(**{**PRODUCTION, "CONNECT_BASE_URL": "https://Connect-App.example.test:8443"})
    assert s["ALLOWED_HOSTS"] == ["localhost", "127.0.0.1", "connect-app.example.test"]


def test_the_base_url_host_gets_through_djangos_host_check(client, settings, db):
    from django.http.request import validate_host

    assert validate_host("connect-app.example.test", settings.ALLOWED_HOSTS)
    response = client.get("/atlassian-connect.json", HTTP_HOST="connect-app.example.test")
    assert response.status_code == 200


def test_doctor_passes_the_base_url_host_without_allowed_hosts_naming_it():
    environment = {
        **{k: v for k, v in os.environ.items() if k not in VARIABLES},
        **PRODUCTION,
        "CONNECT_BASE_URL": "https://connect-app.example.test",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CONNECT_READ_DOTENV": "0",
        "DJANGO_SETTINGS_MODULE": "connectsite.settings",
        "DATABASE_URL": "sqlite:///:memory:",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "connect_doctor"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "ALLOWED_HOSTS" not in result.stdout + result.stderr
    assert result.stdout.strip().endswith("all checks passed"), result.stdout + result.stderr


def test_production_values_are_read(load):
    s = load(
        **PRODUCTION,
        ALLOWED_HOSTS="app.example.com, .example.org",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/connect",
        CACHE_URL="redis://127.0.0.1:6379/2",
        SECURE_SSL_REDIRECT="true",
        CONNECT_APP_KEY="com.example.app",
        CONNECT_EXTRA_AUDIENCES="https://old.example.com/,https://proxy.example.com",
        CONNECT_KEY_SERVERS="https://keys.example.com/,http://127.0.0.1:8123",
        CONNECT_TENANT_HOSTS=".atlassian.net,.Example.NET",
        CONNECT_JWT_LEEWAY="5",
        CONNECT_JWT_MAX_LIFETIME="600",
        CONNECT_KEY_TTL="3600",
        CONNECT_WEBHOOK_MAX_BODY="1000000",
        DATABASE_CONN_HEALTH_CHECKS="on",
        TENANT_STORE_WEBHOOK_BODIES="yes",
        TENANT_WEBHOOK_RETENTION_DAYS="7",
        TENANT_EVENT_RETENTION_DAYS="90",
        TENANT_WEBHOOK_MAX_ATTEMPTS="5",
        TENANT_WEBHOOK_RETRY_DELAY="10",
        TENANT_WEBHOOK_PROCESSING_TIMEOUT="120",
        TENANT_VERIFY_CACHE_SIZE="0",
        TASKS_RQ_URL="redis://127.0.0.1:6379/3",
    )
    assert s["DEBUG"] is False
    assert s["TASKS"]["default"]["BACKEND"] == "django_tasks_rq.RQBackend"
    assert s["RQ_QUEUES"]["default"]["URL"] == "redis://127.0.0.1:6379/3?socket_connect_timeout=2"
    assert "django_rq" in s["INSTALLED_APPS"]
    assert s["ALLOWED_HOSTS"] == ["app.example.com", ".example.org"]
    db = s["DATABASES"]["default"]
    assert (db["ENGINE"], db["NAME"], db["HOST"]) == ("django.db.backends.postgresql", "connect", "127.0.0.1")
    assert db["CONN_HEALTH_CHECKS"] is True  # DATABASE_CONN_HEALTH_CHECKS=on below
    assert list(s["DATABASES"]) == ["default"]  # one connection: audit rows need no second
    assert s["CACHES"]["default"] == {
        "BACKEND": "connectsite.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/2",
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
    assert s["SECURE_SSL_REDIRECT"] is True
    connect = s["CONNECT"]
    assert connect["BASE_URL"] == "https://app.example.com"
    assert connect["APP_KEY"] == "com.example.app"
    assert connect["EXTRA_AUDIENCES"] == ["https://old.example.com", "https://proxy.example.com"]
    assert connect["KEY_SERVERS"] == ["https://keys.example.com", "http://127.0.0.1:8123"]
    assert connect["TENANT_HOSTS"] == [".atlassian.net", ".example.net"]
    assert (connect["JWT_LEEWAY"], connect["JWT_MAX_LIFETIME"], connect["KEY_TTL"]) == (5, 600, 3600)
    assert s["TENANTS"] == {
        "SECRET_KEYS": [KEY],
        "DERIVE_DEVELOPMENT_KEY": False,
        "STORE_WEBHOOK_BODIES": True,
        "WEBHOOK_MAX_ATTEMPTS": 5,
        "WEBHOOK_RETRY_DELAY": 10,
        "WEBHOOK_PROCESSING_TIMEOUT": 120,
        "VERIFY_CACHE_SIZE": 0,
        "WEBHOOK_RETENTION_DAYS": 7,
        "EVENT_RETENTION_DAYS": 90,
    }
    assert connect["WEBHOOK_MAX_BODY"] == 1_000_000


def test_an_sqlite_connection_is_kept_between_requests(load):
    # Reopening the file and running its pragmas on every request cost a webhook a third of its time.
    assert load(DEBUG="1")["DATABASES"]["default"]["CONN_MAX_AGE"] == 60
    assert load(DEBUG="1", DATABASE_CONN_MAX_AGE="0")["DATABASES"]["default"]["CONN_MAX_AGE"] == 0


def test_sqlite_is_set_up_for_concurrent_writers(load):
    options = load(DEBUG="1")["DATABASES"]["default"]["OPTIONS"]
    assert options["timeout"] >= 5
    assert options["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in options["init_command"]


@pytest.mark.parametrize("missing", ["SECRET_KEY", "CONNECT_BASE_URL", "TENANT_SECRET_KEYS"])
def test_production_critical_variable_missing_names_it(load, missing):
    environment = {k: v for k, v in PRODUCTION.items() if k != missing}
    with pytest.raises(ImproperlyConfigured) as info:
        load(**environment)
    assert str(info.value).startswith(f"{missing}: ")
    assert "required when DEBUG is off" in str(info.value)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DEBUG", "maybe", "expected true/false"),
        ("CONNECT_JWT_LEEWAY", "thirty", "whole number"),
        ("CONNECT_JWT_LEEWAY", "-1", "between 0 and 600"),
        ("CONNECT_JWT_MAX_LIFETIME", "0", "between 1 and 86400"),
        ("CONNECT_KEY_TTL", "1e3", "whole number"),
        ("CONNECT_BASE_URL", "app.example.com", "not an absolute http(s) URL"),
        ("CONNECT_BASE_URL", "https://app.example.com/?x=1", "must not carry a query"),
        ("CONNECT_KEY_SERVERS", "http://keys.example.com", "must be https"),
        ("CONNECT_KEY_SERVERS", "ftp://keys.example.com", "not an absolute http(s) URL"),
        ("CONNECT_EXTRA_AUDIENCES", "not a url", "not an absolute http(s) URL"),
        ("DATABASE_URL", "nosuchdb://x", "not a database URL"),
        ("CACHE_URL", "nosuchcache://x", "not a cache URL"),
        ("LOG_LEVEL", "LOUD", "expected DEBUG, INFO"),
        ("TASKS_RQ_URL", "http://127.0.0.1:6379", "must be a Redis URL"),
        ("TENANT_WEBHOOK_MAX_ATTEMPTS", "0", "between 1 and 100"),
        ("FORGE_APP_ID", "my-forge-app", "must be the app's ARI"),
        ("FORGE_APP_ID", "ari:cloud:ecosystem::installation/5f0a2c7e-8b1d-4c3e-9a6f-7d2e1b0c9a8f", "ARI"),
        ("FORGE_JWKS_URL", "http://forge.cdn.prod.atlassian-dev.net/.well-known/jwks.json", "must be https"),
        ("FORGE_JWT_MAX_LIFETIME", "10", "between 30 and 3600"),
        ("FORGE_EVENT_DEDUPE_WINDOW", "60", "between 300 and 86400"),
    ],
)
def test_malformed_variable_names_it(load, name, value, expected):
    with pytest.raises(ImproperlyConfigured) as info:
        load(**{**PRODUCTION, name: value})
    assert str(info.value).startswith(f"{name}: ")
    assert expected in str(info.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.8.9.10"])
def test_key_servers_may_be_plain_http_on_loopback_only(load, host):
    s = load(**PRODUCTION, CONNECT_KEY_SERVERS=f"http://{host}:8123")
    assert s["CONNECT"]["KEY_SERVERS"] == [f"http://{host}:8123"]


def test_the_simulated_jira_is_a_loopback_origin_for_debug_only(load):
    s = load(DEBUG="1", CONNECT_SIMULATED_JIRA="http://127.0.0.1:8766/")
    assert s["CONNECT"]["SIMULATED_JIRA"] == "http://127.0.0.1:8766"
    assert "OAUTH_TOKEN_URL" not in s["CONNECT"]  # Atlassian's for every other tenant
    for environment, expected in [
        ({**PRODUCTION, "CONNECT_SIMULATED_JIRA": "http://127.0.0.1:8766"}, "for a DEBUG demo only"),
        ({"DEBUG": "1", "CONNECT_SIMULATED_JIRA": "https://jira.example.com"}, "must be a loopback origin"),
        ({"DEBUG": "1", "CONNECT_SIMULATED_JIRA": "http://127.0.0.1:8766/jira"}, "must be a loopback origin"),
        ({"DEBUG": "1", "CONNECT_SIMULATED_JIRA": "http://jira.example.com"}, "must be https"),
        ({"DEBUG": "1", "CONNECT_SIMULATED_JIRA": "http://jira.localhost:8766"}, "must be a loopback origin"),
    ]:
        with pytest.raises(ImproperlyConfigured, match=expected):
            load(**environment)


def test_base_url_path_prefix_is_kept_and_trailing_slash_trimmed(load):
    s = load(**{**PRODUCTION, "CONNECT_BASE_URL": "https://app.example.com/jira/"})
    assert s["CONNECT"]["BASE_URL"] == "https://app.example.com/jira"


def test_manage_py_prints_one_line_naming_the_variable_and_never_a_secret():
    environment = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    environment.update(CONNECT_READ_DOTENV="0", SECRET_KEY="s3cr3t-value-must-not-appear", DEBUG="0")
    environment["CONNECT_BASE_URL"] = "https://app.example.com"
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Configuration error: TENANT_SECRET_KEYS: is required when DEBUG is off")
    assert "s3cr3t" not in result.stderr


def test_forge_is_off_by_default_and_on_with_an_app_ari(load):
    s = load(**PRODUCTION)
    assert s["CONNECT"]["FORGE_APP_ID"] == ""
    assert s["CONNECT"]["FORGE_JWKS_URL"] == "https://forge.cdn.prod.atlassian-dev.net/.well-known/jwks.json"
    app = "ari:cloud:ecosystem::app/3a9e1b4c-0d2f-4e6a-8b7c-5d4e3f2a1b0c"
    s = load(**PRODUCTION, FORGE_APP_ID=app, FORGE_JWKS_URL="http://127.0.0.1:9/jwks.json")
    assert (s["CONNECT"]["FORGE_APP_ID"], s["CONNECT"]["FORGE_JWKS_URL"]) == (
        app,
        "http://127.0.0.1:9/jwks.json",
    )
