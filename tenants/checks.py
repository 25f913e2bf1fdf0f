"""System checks for tenant-secret encryption."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, Tags, Warning, register

from tenants.conf import tenant_settings
from tenants.crypto import SecretKeyError, parse_keys


@register(Tags.security)
def check_secret_keys(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """tenants.E001 no key, tenants.E002 a malformed key, tenants.W001 development key in use."""
    keys = tenant_settings.SECRET_KEYS
    if not keys:
        if tenant_settings.DERIVE_DEVELOPMENT_KEY:
            return [
                Warning(
                    "TENANT_SECRET_KEYS is not set: tenant secrets are encrypted with a "
                    "development key derived from SECRET_KEY.",
                    hint="Set TENANT_SECRET_KEYS before storing real tenants; see .env.example.",
                    id="tenants.W001",
                )
            ]
        return [
            Error(
                "TENANT_SECRET_KEYS is empty: shared secrets cannot be encrypted.",
                hint='Generate a key: python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())"',
                id="tenants.E001",
            )
        ]
    try:
        parse_keys(keys)
    except SecretKeyError as exc:
        return [
            Error(
                str(exc),
                hint="Each entry is a Fernet key: 44 characters of url-safe base64.",
                id="tenants.E002",
            )
        ]
    return []


# INSERT ... ON CONFLICT DO NOTHING RETURNING (webhook deliveries) and INSERT ... RETURNING (audit
# rows) need SQLite 3.35 (2021-03); Django 5.2 itself accepts 3.31.
SQLITE_MINIMUM = (3, 35, 0)


@register(Tags.database)
def check_sqlite_version(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[Any]:
    """tenants.E003: the SQLite library is older than :data:`SQLITE_MINIMUM` (``RETURNING``)."""
    from django.db import connections

    if not databases or connections["default"].vendor != "sqlite":
        return []
    import sqlite3

    if sqlite3.sqlite_version_info >= SQLITE_MINIMUM:
        return []
    return [
        Error(
            f"SQLite {sqlite3.sqlite_version} is older than 3.35, which webhook deliveries and audit "
            "rows need (INSERT ... RETURNING).",
            hint="Use a Python built with SQLite 3.35 or newer, or PostgreSQL (DATABASE_URL).",
            id="tenants.E003",
        )
    ]
