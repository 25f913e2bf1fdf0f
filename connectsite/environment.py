"""Reading the environment: django-environ, the optional ``.env`` file, one-line errors.

Used by ``connectsite/settings.py`` (Django and the apps) and ``gunicorn.conf.py`` (the server),
and nowhere else. Every reader names the variable and, for numbers, the unit in its error, so
that a bad value stops start-up with one line such as::

    CONNECT_WEBHOOK_MAX_BODY: expected a whole number of bytes, got '5MB' (set it in ...)

App settings are declared once, in the apps' ``conf.py`` dataclasses; a field whose metadata
names a variable (``tenants.conf.variable``) is read from it by :func:`read_declared`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})


class SettingError(ImproperlyConfigured):
    """A missing or malformed environment variable; the message names it and the fix."""


def fail(name: str, problem: str) -> SettingError:
    """The error for variable ``name``: ``"<name>: <problem> (set it ...)"``."""
    return SettingError(f"{name}: {problem} (set it in the environment or in .env; see .env.example)")


def read_dotenv() -> None:
    """Load ``.env`` from the project folder, unless ``CONNECT_READ_DOTENV=0``; the environment wins."""
    path = BASE_DIR / ".env"
    if os.environ.get("CONNECT_READ_DOTENV", "1") != "0" and path.is_file():
        environ.Env.read_env(path, parse_comments=True)  # "X=on  # why" reads as "on"


def _raw(name: str) -> str | None:
    raw = os.environ.get(name)
    return None if raw is None or raw.strip() == "" else raw.strip()


def boolean(name: str, default: bool) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case); unset or empty gives ``default``."""
    raw = _raw(name)
    if raw is None:
        return default
    if raw.lower() not in TRUE | FALSE:
        raise fail(name, f"expected true/false (1/0, yes/no, on/off), got {raw[:20]!r}")
    return bool(env.parse_value(raw, bool))


def integer(name: str, default: int, *, unit: str, minimum: int, maximum: int) -> int:
    """A whole number of ``unit`` (seconds, bytes, days...; "" for none) within [minimum, maximum]."""
    raw = _raw(name)
    if raw is None:
        return default
    of_unit = f" of {unit}" if unit else ""
    try:
        value = int(env.parse_value(raw, int))  # the raw value: no django-environ "$VAR" proxying
    except ValueError:
        raise fail(name, f"expected a whole number{of_unit}, got {raw[:20]!r}") from None
    if not minimum <= value <= maximum:
        raise fail(name, f"must be between {minimum} and {maximum}{' ' + unit if unit else ''}, got {value}")
    return value


def strings(name: str, default: list[str]) -> list[str]:
    """A comma-separated list; items stripped, empty items dropped; unset gives ``default``."""
    raw = _raw(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in env.parse_value(raw, list) if item.strip()]


def text(name: str, default: str) -> str:
    """A string, stripped; unset or empty gives ``default``."""
    raw = _raw(name)
    return default if raw is None else raw


def is_loopback_host(host: str) -> bool:
    """``localhost``, ``*.localhost`` or a loopback IP address."""
    return host == "localhost" or host.endswith(".localhost") or is_loopback_ip(host)


def is_loopback_ip(host: str) -> bool:
    """A loopback IP address literal (``127.0.0.1``, ``::1``; brackets allowed)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _shown(value: str) -> str:
    """A URL fit for an error line: user info (a password, say) replaced by ``***``."""
    return repr(re.sub(r"//[^/@]*@", "//***@", value)[:80])


def http_url(name: str, value: str, *, https_unless_loopback: bool) -> str:
    """An absolute http(s) URL without query, fragment or user info; one trailing ``/`` trimmed."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
        hostname = parts.hostname
    except ValueError:
        raise fail(name, f"{_shown(value)} is not a valid URL") from None
    if parts.scheme not in {"http", "https"} or not hostname:
        raise fail(name, f"{_shown(value)} is not an absolute http(s) URL")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise fail(name, f"{_shown(value)} must not carry a query, fragment or user info")
    if https_unless_loopback and parts.scheme != "https" and not is_loopback_host(hostname):
        raise fail(name, f"{_shown(value)} must be https (plain http is allowed for loopback hosts only)")
    return value.rstrip("/")


# --- Declared app settings ---------------------------------------------------------------------


def read_declared(declaration: type, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read every field of a settings dataclass that names an environment variable.

    Supports ``int``, ``bool`` and ``tuple[str, ...]`` fields (comma lists); the dataclass
    default applies when the variable is unset. Fields in ``skip`` are left to the caller.
    """
    values: dict[str, Any] = {}
    for item in dataclasses.fields(declaration):
        meta: Mapping[str, Any] = item.metadata
        if "variable" not in meta or item.name in skip:
            continue
        if item.default is not dataclasses.MISSING:
            default: Any = item.default
        elif callable(item.default_factory):
            default = item.default_factory()
        else:
            default = None
        if item.type in ("int", int):
            values[item.name] = integer(
                meta["variable"], default, unit=meta["unit"], minimum=meta["minimum"], maximum=meta["maximum"]
            )
        elif item.type in ("bool", bool):
            values[item.name] = boolean(meta["variable"], default)
        elif item.type == "tuple[str, ...]":
            values[item.name] = strings(meta["variable"], default)
        else:  # pragma: no cover - a declaration error, caught by the settings tests
            raise TypeError(f"{declaration.__name__}.{item.name}: no reader for type {item.type!r}")
    return values
