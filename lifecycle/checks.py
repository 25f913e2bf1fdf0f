"""System checks for the Connect configuration."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from lifecycle.conf import connect_settings
from lifecycle.decorators import MIDDLEWARE_PATH

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


@register(Tags.security)
def check_base_url(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """lifecycle.E001 non-https base URL outside DEBUG; lifecycle.W001 DEBUG on a public URL."""
    base_url = connect_settings.BASE_URL
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    problems: list[Any] = []
    if not settings.DEBUG and parts.scheme != "https":
        problems.append(
            Error(
                f"CONNECT_BASE_URL is {base_url!r}: Jira Cloud only calls https apps.",
                hint="Set CONNECT_BASE_URL to the app's public https URL (the descriptor baseUrl).",
                id="lifecycle.E001",
            )
        )
    if settings.DEBUG and host not in _LOCAL_HOSTS and not host.endswith(".localhost"):
        problems.append(
            Warning(
                f"DEBUG is on while CONNECT_BASE_URL points at the public host {host!r}.",
                hint="Turn DEBUG off for any deployment Jira can reach: it exposes tracebacks.",
                id="lifecycle.W001",
            )
        )
    return problems


@register(Tags.security)
def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """lifecycle.E002: the verification middleware is missing, so declared views would fail
    closed. lifecycle.W003: it is not last, so view middleware after it would be skipped for
    those views (it runs them itself)."""
    if MIDDLEWARE_PATH in settings.MIDDLEWARE:
        if settings.MIDDLEWARE[-1] == MIDDLEWARE_PATH:
            return []
        after = settings.MIDDLEWARE[settings.MIDDLEWARE.index(MIDDLEWARE_PATH) + 1 :]
        return [
            Warning(
                f"The Connect verification middleware is followed by {', '.join(after)}: it runs "
                "verified views itself, so their process_view hooks are skipped for those views.",
                hint=f"Put {MIDDLEWARE_PATH!r} last in MIDDLEWARE.",
                id="lifecycle.W003",
            )
        ]
    return [
        Error(
            "The Connect verification middleware is not installed: "
            "lifecycle and webhook views refuse to run.",
            hint=f"Add {MIDDLEWARE_PATH!r} to MIDDLEWARE.",
            id="lifecycle.E002",
        )
    ]


@register(Tags.security, Tags.caches)
def check_shared_cache(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """lifecycle.E003 a dummy cache (no replay guard); lifecycle.W002 a per-process cache outside DEBUG."""
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    if backend.endswith("DummyCache"):
        return [
            Error(
                "CACHE_URL is a dummy cache: the replay guard remembers nothing.",
                hint="Use locmemcache:// for one process, or redis://... for several.",
                id="lifecycle.E003",
            )
        ]
    if backend.endswith("LocMemCache") and not settings.DEBUG:
        return [
            Warning(
                "CACHE_URL is local memory: the replay guard and the unknown-kid cache "
                "hold per process only.",
                hint="With more than one worker or host, set CACHE_URL=redis://host:6379/0.",
                id="lifecycle.W002",
            )
        ]
    return []


@register(Tags.security)
def check_simulated_jira(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """lifecycle.W004: ``CONNECT_SIMULATED_JIRA`` is set (settings.py allows it in DEBUG only):
    tenants on that loopback site are accepted, and their user grants go to its token endpoint."""
    simulated = connect_settings.SIMULATED_JIRA
    if not simulated:
        return []
    return [
        Warning(
            f"CONNECT_SIMULATED_JIRA is {simulated!r}: tenants on that loopback site are accepted, and "
            "their user token grants go to it.",
            hint="Leave it to the simulator and `make demo`; it is refused with DEBUG off.",
            id="lifecycle.W004",
        )
    ]
