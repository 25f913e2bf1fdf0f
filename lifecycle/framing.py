"""Who may frame a response: the app's iframe pages by their tenant's site, nothing else.

``settings.CONTENT_SECURITY_POLICY`` (django-csp) says ``frame-ancestors 'none'`` for every
response; a page replaces it for its own response with the tenant's origins. Each origin is
rebuilt from a parsed URL (scheme, host, port) and checked, so a stored baseUrl or displayUrl
can never inject another directive into the header.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from django.http import HttpResponse

from lifecycle.conf import connect_settings

_HOST = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?")


def origin(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, or None when it is not one a CSP may name."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not _HOST.fullmatch(host):
        return None
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def allow_framing_by(response: HttpResponse, urls: Iterable[str]) -> HttpResponse:
    """Let the origins of ``urls`` frame ``response`` (and nobody else): CSP
    ``frame-ancestors`` through django-csp, and no ``X-Frame-Options`` for this response."""
    origins = sorted({o for o in (origin(url) for url in urls if url) if o})
    setattr(response, "_csp_replace", {"frame-ancestors": origins or ["'none'"]})  # noqa: B010 - django-csp reads it
    response.xframe_options_exempt = True
    return response


def allow_framing_by_tenant_sites(response: HttpResponse) -> HttpResponse:
    """For a refusal shown inside Jira before the tenant is known: any site under
    ``CONNECT_TENANT_HOSTS`` (``https://*.atlassian.net`` ...); it carries no tenant's data."""
    sources = [f"https://*.{suffix.lstrip('.')}" for suffix in connect_settings.TENANT_HOSTS]
    setattr(response, "_csp_replace", {"frame-ancestors": sources or ["'none'"]})  # noqa: B010 - django-csp reads it
    response.xframe_options_exempt = True
    return response
