"""tenants/checks.py: system check ids for secret encryption."""

from django.test import override_settings

from tenants.checks import check_secret_keys

GOOD_KEY = "q8Mn2ZQy0E3cdj8B3zZ6m1cJ8vZ0kQ2xN9mVb7a1c3E="


def ids(messages):
    return [message.id for message in messages]


def test_missing_keys_is_an_error_and_debug_derivation_a_warning():
    with override_settings(TENANTS={"SECRET_KEYS": [], "DERIVE_DEVELOPMENT_KEY": False}):
        assert ids(check_secret_keys()) == ["tenants.E001"]
    with override_settings(TENANTS={"SECRET_KEYS": [], "DERIVE_DEVELOPMENT_KEY": True}):
        assert ids(check_secret_keys()) == ["tenants.W001"]


def test_malformed_key_is_an_error_that_does_not_print_the_key():
    with override_settings(TENANTS={"SECRET_KEYS": [GOOD_KEY, "not-a-fernet-key-but-secret"]}):
        [message] = check_secret_keys()
    assert message.id == "tenants.E002"
    assert "entry 2" in message.msg
    assert "not-a-fernet-key-but-secret" not in message.msg + (message.hint or "")


def test_valid_keys_pass():
    with override_settings(TENANTS={"SECRET_KEYS": [GOOD_KEY]}):
        assert check_secret_keys() == []


def test_an_sqlite_library_older_than_3_35_is_an_error(monkeypatch):
    import sqlite3

    from django.db import connections

    from tenants.checks import check_sqlite_version

    if connections["default"].vendor != "sqlite":
        assert check_sqlite_version(databases=["default"]) == []  # PostgreSQL: nothing to check
        return
    assert check_sqlite_version(databases=["default"]) == []  # this machine's (3.40)
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.34.1")
    [message] = check_sqlite_version(databases=["default"])
    assert message.id == "tenants.E003" and "3.34.1" in message.msg
    assert check_sqlite_version(databases=None) == []  # only when databases are checked
