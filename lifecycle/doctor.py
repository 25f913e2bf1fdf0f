"""Diagnostics for ``manage.py connect_doctor``: the descriptor, the settings, the key servers and
the Forge JWKS.

Each check yields :class:`Finding` objects: a level, what is wrong, and the fix, one line each.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import validate_host
from django.urls import Resolver404, resolve

from lifecycle import descriptor as descriptor_module
from lifecycle.conf import connect_settings
from tenants.checks import check_secret_keys

APP_KEY_PATTERN = re.compile(r"^[a-zA-Z0-9._-]{1,64}$")
ERROR, WARNING = "ERROR", "WARNING"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class Finding:
    level: str
    topic: str
    problem: str
    fix: str

    def line(self) -> str:
        return f"{self.level:<7} {self.topic}: {self.problem} Fix: {self.fix}"


def load_descriptor(path: Path | None) -> tuple[dict[str, Any] | None, list[Finding]]:
    """The descriptor to check: a given file as it is, or the template as this server renders it."""
    if path is None:
        return descriptor_module.render(), []
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, [
            Finding(ERROR, "descriptor", f"{path} is not a readable JSON file ({exc}).", "Fix the file.")
        ]
    if not isinstance(data, dict):
        return None, [Finding(ERROR, "descriptor", f"{path} does not hold a JSON object.", "Fix the file.")]
    return data, []


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    """A descriptor object's member that should itself be an object ({} when it is not)."""
    value = data.get(name)
    return value if isinstance(value, dict) else {}


def check_descriptor(data: dict[str, Any]) -> Iterator[Finding]:
    """Signed install, context-qsh, jwt, https baseUrl, routed URLs, READ scope, a valid key."""
    migrations = _section(data, "apiMigrations")
    if migrations.get("signed-install") is not True:
        yield Finding(
            ERROR,
            "descriptor.apiMigrations",
            "signed-install is off: Jira sends installed unsigned or signed with the secret it carries, "
            "so anyone could overwrite a tenant's secret (and this server refuses such installs).",
            'add "apiMigrations": {"signed-install": true} to atlassian-connect.json.',
        )
    if migrations.get("context-qsh") is not True:
        yield Finding(
            ERROR,
            "descriptor.apiMigrations",
            "context-qsh is off.",
            'add "context-qsh": true to "apiMigrations" in atlassian-connect.json.',
        )
    authentication = data.get("authentication")
    if not isinstance(authentication, dict) or authentication.get("type") != "jwt":
        yield Finding(
            ERROR, "descriptor.authentication", "is not JWT.", 'set "authentication": {"type": "jwt"}.'
        )
    key = data.get("key")
    if not isinstance(key, str) or not APP_KEY_PATTERN.match(key):
        yield Finding(
            ERROR,
            "descriptor.key",
            f"{key!r} is not a valid app key.",
            "use 1-64 characters of letters, digits, '.', '_' and '-' (CONNECT_APP_KEY).",
        )
    elif key != connect_settings.APP_KEY:
        yield Finding(
            ERROR,
            "descriptor.key",
            f"{key!r} differs from CONNECT_APP_KEY {connect_settings.APP_KEY!r}.",
            "make them equal, or installs are refused with app_key_mismatch.",
        )
    base_url = data.get("baseUrl")
    if not isinstance(base_url, str) or urlsplit(base_url).scheme != "https":
        yield Finding(
            ERROR,
            "descriptor.baseUrl",
            f"{base_url!r} is not https: Jira Cloud only calls https apps.",
            "set CONNECT_BASE_URL to the app's public https URL.",
        )
    if isinstance(base_url, str) and base_url.rstrip("/") != connect_settings.BASE_URL.rstrip("/"):
        yield Finding(
            ERROR,
            "descriptor.baseUrl",
            f"{base_url!r} is not CONNECT_BASE_URL {connect_settings.BASE_URL!r}.",
            "make them equal: the baseUrl is the audience of Atlassian's install tokens.",
        )
    lifecycle = _section(data, "lifecycle")
    for event in ("installed", "uninstalled"):
        if not isinstance(lifecycle.get(event), str):
            yield Finding(
                ERROR,
                f"descriptor.lifecycle.{event}",
                "is missing.",
                f'declare "{event}": "/lifecycle/{event}" under "lifecycle".',
            )
    base_path = urlsplit(base_url).path.rstrip("/") if isinstance(base_url, str) else ""
    for name, path in descriptor_module.declared_urls(data).items():
        try:
            resolve(base_path + path)  # Jira calls the descriptor's URLs relative to its baseUrl
        except Resolver404:
            yield Finding(
                ERROR,
                f"descriptor.{name}",
                f"URL {path!r} is not routed by this server.",
                "point it at a route in lifecycle/urls.py or add one.",
            )
    webhooks = (data.get("modules") or {}).get("webhooks") if isinstance(data.get("modules"), dict) else None
    scopes = [str(s).upper() for s in data.get("scopes") or []]
    if webhooks and "READ" not in scopes:
        yield Finding(
            ERROR,
            "descriptor.scopes",
            "webhooks are declared without the READ scope: Jira sends none.",
            'add "READ" to "scopes".',
        )


def check_settings() -> Iterator[Finding]:
    """Encryption keys, DEBUG in production, ALLOWED_HOSTS covering the base URL host."""
    for message in check_secret_keys():
        level = ERROR if message.level >= 40 else WARNING
        yield Finding(level, "settings.TENANT_SECRET_KEYS", message.msg, message.hint or "see .env.example.")
    host = (urlsplit(connect_settings.BASE_URL).hostname or "").lower()
    public = host not in LOCAL_HOSTS and not host.endswith(".localhost")
    if settings.DEBUG and public:
        yield Finding(
            ERROR,
            "settings.DEBUG",
            f"DEBUG is on while CONNECT_BASE_URL is the public host {host!r}.",
            "set DEBUG=off for any deployment Jira can reach.",
        )
    if host and not validate_host(host, settings.ALLOWED_HOSTS):
        yield Finding(
            ERROR,
            "settings.ALLOWED_HOSTS",
            f"does not cover the base URL host {host!r}: Jira's calls would get 400.",
            "connectsite/settings.py always allows it; keep that in a settings module of your own.",
        )
    yield from check_forge_settings()
    if not settings.DEBUG and urlsplit(connect_settings.BASE_URL).scheme != "https":
        yield Finding(
            ERROR,
            "settings.CONNECT_BASE_URL",
            f"{connect_settings.BASE_URL!r} is not https.",
            "set CONNECT_BASE_URL to the app's public https URL.",
        )


def check_forge_settings() -> Iterator[Finding]:
    """FORGE_APP_ID an app ARI (when set) and FORGE_JWKS_URL https (http for loopback only)."""
    from connectsite.environment import is_loopback_host
    from lifecycle.conf import FORGE_APP_ARI

    app_id = connect_settings.FORGE_APP_ID
    if app_id and not FORGE_APP_ARI.fullmatch(app_id):
        yield Finding(
            ERROR,
            "settings.FORGE_APP_ID",
            f"{app_id[:80]!r} is not an app ARI: every Forge call would be refused.",
            "set it to app.id of manifest.yml, ari:cloud:ecosystem::app/<uuid>.",
        )
    url = urlsplit(connect_settings.FORGE_JWKS_URL)
    if url.scheme != "https" and not (url.scheme == "http" and is_loopback_host(url.hostname or "")):
        yield Finding(
            ERROR,
            "settings.FORGE_JWKS_URL",
            f"{connect_settings.FORGE_JWKS_URL[:120]!r} is not https.",
            "unset it (Atlassian's: https://forge.cdn.prod.atlassian-dev.net/.well-known/jwks.json).",
        )


def check_forge_jwks() -> Iterator[Finding]:
    """With FORGE_APP_ID set: fetch FORGE_JWKS_URL once, as a Forge call would, and count its keys."""
    from lifecycle.jwks import JwksUnusable, fetch_jwks
    from lifecycle.keys import ServerDown

    if not connect_settings.forge_enabled:
        return
    try:
        fetch_jwks(connect_settings.FORGE_JWKS_URL)
    except (JwksUnusable, ServerDown) as exc:
        yield Finding(
            ERROR,
            "forge_jwks",
            f"{connect_settings.FORGE_JWKS_URL} gave no usable JWKS ({exc}): Forge calls would get 503.",
            "allow outbound https to it, or fix FORGE_JWKS_URL.",
        )


def check_services() -> Iterator[Finding]:
    """The database answers a query and the Django cache stores and returns a value."""
    from django.core.cache import cache
    from django.db import connection

    from connectsite.diagnostics import cache_label, database_label, reason

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any driver error: report it, whatever its class
        yield Finding(
            ERROR,
            "database",
            f"the {database_label()} does not answer ({reason(exc)}).",
            "check DATABASE_URL and that the database server is up and reachable from here.",
        )
    probe = "connect:doctor:probe"
    try:
        cache.set(probe, "ok", 10)
        answered = cache.get(probe)
        cache.delete(probe)
    except Exception as exc:
        yield Finding(
            ERROR,
            "cache",
            f"the {cache_label()} does not answer ({reason(exc)}).",
            "check CACHE_URL and that the cache server is up and reachable from here.",
        )
    else:
        if answered != "ok":
            yield Finding(
                ERROR,
                "cache",
                f"the {cache_label()} did not return a value just stored, so the replay guard holds nothing.",
                "use locmemcache:// for one process, or redis://host:6379/0 for several.",
            )


def check_key_servers() -> Iterator[Finding]:
    """Ask each key server for a kid that does not exist: a 403/404 proves it answers."""
    from lifecycle.keys import KeyNotPublished, ServerDown, UnusableAnswer, ask_server

    for server in connect_settings.KEY_SERVERS:
        try:
            ask_server(
                server, "connect-doctor-reachability-probe", connect_settings.KEY_FETCH_SERVER_DEADLINE
            )
        except KeyNotPublished:
            continue
        except (UnusableAnswer, ServerDown) as exc:
            yield Finding(
                ERROR,
                "key_servers",
                f"{server} did not answer as a key server ({exc}).",
                "allow outbound https to it, or fix CONNECT_KEY_SERVERS.",
            )
        else:
            yield Finding(
                WARNING,
                "key_servers",
                f"{server} returned a key for a made-up kid.",
                "check that CONNECT_KEY_SERVERS points at Atlassian's key servers.",
            )
