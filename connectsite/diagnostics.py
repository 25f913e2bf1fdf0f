"""Names for the services this server depends on, fit for an operator's error message.

They name the database (engine, name, host, port) and the cache (backend, host, port, db) and
never a password: a URL's user info is left out.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings


def database_label(alias: str = "default") -> str:
    """``postgresql database 'connect' at 127.0.0.1:5432`` or ``sqlite3 database '/path/db.sqlite3'``."""
    config: dict[str, Any] = settings.DATABASES[alias]
    vendor = str(config.get("ENGINE", "")).rsplit(".", 1)[-1]
    label = f"{vendor} database {str(config.get('NAME', ''))!r}"
    if config.get("HOST"):
        label += f" at {config['HOST']}:{config.get('PORT') or 'default port'}"
    return label


def cache_label(alias: str = "default") -> str:
    """``RedisCache at 127.0.0.1:6379/0`` (no user info) or ``LocMemCache``."""
    config: dict[str, Any] = settings.CACHES[alias]
    backend = str(config.get("BACKEND", "")).rsplit(".", 1)[-1]
    location = config.get("LOCATION")
    if isinstance(location, str) and "://" in location:
        parts = urlsplit(location)
        return f"{backend} at {parts.hostname}:{parts.port or 'default port'}{parts.path}"
    return backend


def reason(exc: BaseException) -> str:
    """The first line of an exception's message, bounded: what a driver says went wrong."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
