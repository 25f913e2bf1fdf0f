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

    Lifecycle URLs by event name; webhooks as ``webhook:<event>``; general pages as
    ``page:<key>``. Returned as paths without the query string (Jira substitutes ``${...}``
    variables in it).
    """
    urls: dict[str, str] = {}
    for event, url in (descriptor.get("lifecycle") or {}).items():
        if isinstance(url, str):
            urls[event] = urlsplit(url).path
    modules = descriptor.get("modules") or {}
    for hook in modules.get("webhooks") or []:
        if isinstance(hook, dict) and isinstance(hook.get("url"), str):
            urls[f"webhook:{hook.get('event')}"] = urlsplit(hook["url"]).path
    for page in modules.get("generalPages") or []:
        if isinstance(page, dict) and isinstance(page.get("url"), str):
            urls[f"page:{page.get('key')}"] = urlsplit(page["url"]).path
    return urls
