"""The lifecycle app's settings: declared once here, read as ``connect_settings`` at call time.

``connectsite/settings.py`` builds ``settings.CONNECT`` from the ``CONNECT_*`` variables named in
the fields' metadata; a custom settings module may leave names out and gets these defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from tenants.conf import AppSettings, variable

PRODUCTION_KEY_SERVERS = (
    "https://asap-distribution.us-west-2.prod.atl-asap.net",
    "https://connect-install-keys.atlassian.com",
)
# Forge (Forge remote contract, developer.atlassian.com/platform/forge/remote/essentials/).
PRODUCTION_FORGE_JWKS_URL = "https://forge.cdn.prod.atlassian-dev.net/.well-known/jwks.json"
FORGE_APP_ARI = re.compile(
    r"ari:cloud:ecosystem::app/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)
DEFAULT_DESCRIPTOR = Path(__file__).resolve().parent.parent / "atlassian-connect.json"


@dataclass(frozen=True)
class ConnectSettings:
    """``settings.CONNECT``: every Connect setting, its type, default (SPEC 2) and variable."""

    # The app's public baseUrl (descriptor baseUrl, the JWT aud) and the descriptor key.
    BASE_URL: str = field(default="", metadata=variable("CONNECT_BASE_URL"))
    APP_KEY: str = field(default="", metadata=variable("CONNECT_APP_KEY"))
    EXTRA_AUDIENCES: tuple[str, ...] = field(default=(), metadata=variable("CONNECT_EXTRA_AUDIENCES"))
    KEY_SERVERS: tuple[str, ...] = field(
        default=PRODUCTION_KEY_SERVERS, metadata=variable("CONNECT_KEY_SERVERS")
    )
    TENANT_HOSTS: tuple[str, ...] = field(
        default=(".atlassian.net", ".jira.com"), metadata=variable("CONNECT_TENANT_HOSTS")
    )
    JWT_LEEWAY: int = field(
        default=30, metadata=variable("CONNECT_JWT_LEEWAY", unit="seconds", minimum=0, maximum=600)
    )
    JWT_MAX_LIFETIME: int = field(
        default=3600, metadata=variable("CONNECT_JWT_MAX_LIFETIME", unit="seconds", minimum=1, maximum=86400)
    )
    KEY_TTL: int = field(
        default=86400, metadata=variable("CONNECT_KEY_TTL", unit="seconds", minimum=60, maximum=30 * 86400)
    )
    # Key fetches, seconds: connect timeout, total per server, total in all.
    KEY_FETCH_TIMEOUT: float = 2.0
    KEY_FETCH_SERVER_DEADLINE: float = 3.0
    KEY_FETCH_DEADLINE: float = 5.0
    # A kid every server answered 403/404/410 for is refused without asking again for this long.
    KEY_NEGATIVE_TTL: int = 60
    # A key server down (refused, reset, TLS, timeout, 5xx) this many times in a row is skipped
    # for KEY_FAILURE_BACKOFF seconds, then probed once.
    KEY_SERVER_FAILURES: int = 3
    KEY_FAILURE_BACKOFF: float = 5.0
    # Fetches of kids not cached yet, per source address and in all, through the Django cache
    # (django-ratelimit's "count/period" rates): random kids cannot tie up the workers.
    KEY_FETCH_RATE_PER_SOURCE: str = "6/m"
    KEY_FETCH_RATE: str = "30/m"
    # How long past its TTL a cached key may still be used while every key server fails, seconds.
    KEY_STALE_IF_ERROR: int = 7 * 86400
    # Largest lifecycle request body, bytes.
    LIFECYCLE_MAX_BODY: int = 64 * 1024
    # Largest webhook body, bytes.
    WEBHOOK_MAX_BODY: int = field(
        default=5 * 1024 * 1024,
        metadata=variable("CONNECT_WEBHOOK_MAX_BODY", unit="bytes", minimum=1024, maximum=100 * 1024 * 1024),
    )
    # Most JSON values a webhook body may hold (an upper bound counted from its commas and
    # brackets): with WEBHOOK_MAX_BODY, it bounds what a body costs a worker (about 150 bytes per
    # value plus up to 9 times the body's size; bench/webhook_memory.py).
    WEBHOOK_MAX_JSON_VALUES: int = field(
        default=250_000,
        metadata=variable("CONNECT_WEBHOOK_MAX_JSON_VALUES", unit="values", minimum=1000, maximum=10_000_000),
    )
    DESCRIPTOR_PATH: Path = DEFAULT_DESCRIPTOR
    # Atlassian's OAuth 2.0 token endpoint for user impersonation (JWT bearer grant).
    OAUTH_TOKEN_URL: str = "https://oauth-2-authorization-server.services.atlassian.com/oauth2/token"  # noqa: S105
    # DEBUG only: the origin (http://127.0.0.1:<port>) of the simulator's loopback fake Jira.
    # Tenants whose baseUrl is on it are accepted, and their user grants go to its token endpoint.
    SIMULATED_JIRA: str = field(default="", metadata=variable("CONNECT_SIMULATED_JIRA"))

    # --- Forge remote (Connect on Forge) ---
    # The app's id as Forge puts it in a FIT's aud and app.id: ari:cloud:ecosystem::app/<uuid>
    # (manifest.yml app.id). Empty: the Forge routes answer 404 forge_not_configured.
    FORGE_APP_ID: str = field(default="", metadata=variable("FORGE_APP_ID"))
    FORGE_JWKS_URL: str = field(default=PRODUCTION_FORGE_JWKS_URL, metadata=variable("FORGE_JWKS_URL"))
    # Largest accepted FIT exp - iat, seconds (Forge's own are about 25 s).
    FORGE_JWT_MAX_LIFETIME: int = field(
        default=300, metadata=variable("FORGE_JWT_MAX_LIFETIME", unit="seconds", minimum=30, maximum=3600)
    )
    # How long a fetched JWKS is used before it is fetched again, seconds; past that, while the
    # JWKS URL fails, it is still used for FORGE_JWKS_STALE_IF_ERROR more seconds.
    FORGE_JWKS_TTL: int = field(
        default=3600, metadata=variable("FORGE_JWKS_TTL", unit="seconds", minimum=60, maximum=86400)
    )
    FORGE_JWKS_STALE_IF_ERROR: int = 86400
    # A kid not in the JWKS refetches it at most once per this many seconds, for all processes.
    FORGE_JWKS_REFETCH_INTERVAL: int = 60
    # JWKS fetch: connect timeout and total deadline, seconds; the largest document, bytes.
    # (Forge answers events within 5 s: a hung JWKS must leave time for the rest of the call.)
    FORGE_JWKS_FETCH_TIMEOUT: float = 1.5
    FORGE_JWKS_FETCH_DEADLINE: float = 2.5
    FORGE_JWKS_MAX_BYTES: int = 64 * 1024
    # Largest Forge event body, bytes.
    FORGE_EVENT_MAX_BODY: int = field(
        default=1024 * 1024,
        metadata=variable("FORGE_EVENT_MAX_BODY", unit="bytes", minimum=1024, maximum=100 * 1024 * 1024),
    )
    # A retried event (retryContext) whose event, retryContext aside, was stored this many seconds
    # before or less is a duplicate (Forge retries 4 times, 60 s apart).
    FORGE_EVENT_DEDUPE_WINDOW: int = field(
        default=900,
        metadata=variable("FORGE_EVENT_DEDUPE_WINDOW", unit="seconds", minimum=300, maximum=86400),
    )

    def __post_init__(self) -> None:
        for name in ("BASE_URL", "APP_KEY"):
            if not getattr(self, name):
                raise ValueError(f"{name} is required")
        if self.FORGE_APP_ID and not FORGE_APP_ARI.fullmatch(self.FORGE_APP_ID):
            raise ValueError(
                f"FORGE_APP_ID {self.FORGE_APP_ID[:80]!r} is not an app ARI: "
                "ari:cloud:ecosystem::app/<uuid>, as app.id in manifest.yml"
            )

    @property
    def forge_enabled(self) -> bool:
        """Whether the Forge routes are on (``FORGE_APP_ID`` is set)."""
        return bool(self.FORGE_APP_ID)


_loader = AppSettings("CONNECT", ConnectSettings)
connect_settings = cast(ConnectSettings, _loader)


def load() -> ConnectSettings:
    """Validate ``settings.CONNECT`` now (``ImproperlyConfigured`` names a bad entry); the
    app's ``ready()`` calls it so that a bad value stops start-up, not the first request."""
    return _loader.load()
