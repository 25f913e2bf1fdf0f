"""lifecycle/checks.py: system check ids for the Connect configuration."""

import pytest
from django.test import override_settings

from lifecycle.checks import check_base_url

CONNECT = {"APP_KEY": "django-connect-app"}


def ids(messages):
    return [message.id for message in messages]


def test_https_base_url_in_production_passes():
    with override_settings(DEBUG=False, CONNECT={**CONNECT, "BASE_URL": "https://app.example.com"}):
        assert check_base_url() == []


def test_plain_http_base_url_in_production_is_an_error():
    with override_settings(DEBUG=False, CONNECT={**CONNECT, "BASE_URL": "http://app.example.com"}):
        assert ids(check_base_url()) == ["lifecycle.E001"]


def test_debug_with_a_public_base_url_warns():
    with override_settings(DEBUG=True, CONNECT={**CONNECT, "BASE_URL": "https://app.example.com"}):
        assert ids(check_base_url()) == ["lifecycle.W001"]
    with override_settings(DEBUG=True, CONNECT={**CONNECT, "BASE_URL": "http://localhost:8000"}):
        assert check_base_url() == []


def test_cache_checks(settings):
    from lifecycle.checks import check_shared_cache

    settings.DEBUG = False
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert ids(check_shared_cache()) == ["lifecycle.W002"]
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    assert ids(check_shared_cache()) == ["lifecycle.E003"]
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://x"}
    }
    assert check_shared_cache() == []
    settings.DEBUG = True
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert check_shared_cache() == []


def test_the_verification_middleware_not_last_is_a_warning(settings):
    from django.core.checks import run_checks

    middleware = "lifecycle.middleware.ConnectVerificationMiddleware"
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != middleware] + [middleware]
    assert "lifecycle.W003" not in [m.id for m in run_checks()]
    settings.MIDDLEWARE = [middleware, *[m for m in settings.MIDDLEWARE if m != middleware]]
    warned = [m for m in run_checks() if m.id == "lifecycle.W003"]
    assert len(warned) == 1 and "HealthCheckMiddleware" in warned[0].msg


def test_a_simulated_jira_is_a_warning_and_its_tenants_pass_in_debug_only(settings):
    from lifecycle.checks import check_simulated_jira
    from lifecycle.errors import TenantHostNotAllowed
    from lifecycle.verification import check_tenant_base_url

    assert check_simulated_jira() == []
    settings.CONNECT = {**settings.CONNECT, "SIMULATED_JIRA": "http://127.0.0.1:8766"}
    settings.DEBUG = True
    assert ids(check_simulated_jira()) == ["lifecycle.W004"]
    check_tenant_base_url("http://127.0.0.1:8766")
    check_tenant_base_url("http://127.0.0.1:8766/jira")
    for other in (
        "http://127.0.0.1:8767",
        "http://127.0.0.1:87660",
        "http://127.0.0.1:8766?x",
        "http://127.0.0.1:8766\\@x",
    ):
        with pytest.raises(TenantHostNotAllowed):
            check_tenant_base_url(other)
    settings.DEBUG = False  # the settings refuse the variable then; the check holds on its own too
    with pytest.raises(TenantHostNotAllowed):
        check_tenant_base_url("http://127.0.0.1:8766")
