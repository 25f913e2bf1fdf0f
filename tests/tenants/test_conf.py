"""tenants/conf.py: each app setting declared once, typed; wrong types and unknown names refused."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from lifecycle.conf import ConnectSettings, connect_settings
from tenants.conf import TenantSettings, tenant_settings


def test_values_come_typed_as_declared(settings):
    settings.CONNECT = {
        **settings.CONNECT,
        "KEY_FAILURE_BACKOFF": 5,
        "KEY_SERVERS": ["https://k.example.com"],
    }
    assert connect_settings.KEY_FAILURE_BACKOFF == 5.0 and isinstance(
        connect_settings.KEY_FAILURE_BACKOFF, float
    )
    assert connect_settings.KEY_SERVERS == ("https://k.example.com",)
    assert isinstance(connect_settings.JWT_LEEWAY, int)
    assert isinstance(tenant_settings.SECRET_KEYS, tuple)


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("JWT_LEEWAY", "30", "must be a whole number"),
        ("JWT_LEEWAY", True, "must be a whole number"),
        ("KEY_SERVERS", "https://k.example.com", "must be a list of strings"),
        ("BASE_URL", "", "BASE_URL is required"),
        ("NO_SUCH_SETTING", 1, "unknown names ['NO_SUCH_SETTING']"),
    ],
)
def test_a_wrong_type_or_an_unknown_name_is_refused_naming_it(settings, name, value, problem):
    settings.CONNECT = {**settings.CONNECT, name: value}
    with pytest.raises(ImproperlyConfigured, match=problem.replace("[", r"\[").replace("]", r"\]")):
        connect_settings.JWT_LEEWAY  # noqa: B018


def test_defaults_apply_to_names_a_settings_module_leaves_out(settings):
    settings.TENANTS = {}
    assert tenant_settings.EVENT_RETENTION_DAYS == TenantSettings.EVENT_RETENTION_DAYS == 365
    settings.CONNECT = {"BASE_URL": "https://a.example.com", "APP_KEY": "k"}
    assert connect_settings.KEY_TTL == ConnectSettings.KEY_TTL == 86400
