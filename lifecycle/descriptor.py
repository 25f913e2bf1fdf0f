"""The app descriptor: the repo's ``atlassian-connect.json`` with ``baseUrl`` and ``key`` from settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from lifecycle.conf import connect_settings


def load_template(path: Path | None = None) -> dict[str, Any]:
    """Read the descriptor template; ``ImproperlyConfigured`` names the file when it is unusable."""
    path = Path(path or connect_settings.DESCRIPTOR_PATH)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ImproperlyConfigured(f"{path} is not a readable JSON file: {exc}") from exc
    if not isinstance(data, dict):
        raise ImproperlyConfigured(f"{path} must hold a JSON object")
    return data


def render() -> dict[str, Any]:
    """The descriptor as Jira should see it."""
    data = load_template()
    data["baseUrl"] = connect_settings.BASE_URL
    data["key"] = connect_settings.APP_KEY
    return data


def signed_install_enabled() -> bool:
    """Whether the served descriptor has ``"apiMigrations": {"signed-install": true}`` (SPEC 1.9).

    False when the template cannot be read (the system checks report that separately).
    """
    try:
        migrations = load_template().get("apiMigrations")
    except ImproperlyConfigured:
        return False
    return isinstance(migrations, dict) and migrations.get("signed-install") is True


def declared_urls(descriptor: dict[str, Any]) -> dict[str, str]:
    """Every relative URL the descriptor asks Jira to call, by a readable name.

    Lifecycle URLs by event name; webhooks as ``webhook:<event>``; every other module with a
    relative ``url`` (``generalPages``, ``webPanels``, ``jiraIssueContents``...) as
    ``<module type>:<key>``, e.g. ``generalPages:hello``. Returned as paths without the query
    string (Jira substitutes ``${...}`` variables in it). Absolute URLs (another host's) are left
    out: this app does not serve them.
    """
    urls: dict[str, str] = {}
    for event, url in (descriptor.get("lifecycle") or {}).items():
        if isinstance(url, str):
            urls[event] = urlsplit(url).path
    modules = descriptor.get("modules") or {}
    for kind, entries in modules.items():
        for entry in entries if isinstance(entries, list) else [entries]:
            url = entry.get("url") if isinstance(entry, dict) else None
            if not isinstance(url, str) or "://" in url:
                continue
            name = f"webhook:{entry.get('event')}" if kind == "webhooks" else f"{kind}:{entry.get('key')}"
            urls[name] = urlsplit(url).path
    return urls
