"""The lifecycle app's settings object: ``settings.CONNECT``, read at call time.

``connectsite/settings.py`` builds ``CONNECT`` from the environment (``CONNECT_*`` variables);
these defaults apply to names a custom settings module leaves out.
"""

from __future__ import annotations

from pathlib import Path

from tenants.conf import AppSettings

connect_settings = AppSettings(
    "CONNECT",
    defaults={
        "BASE_URL": "",
        "APP_KEY": "",
        "EXTRA_AUDIENCES": [],
        "KEY_SERVERS": [
            "https://asap-distribution.us-west-2.prod.atl-asap.net",
            "https://connect-install-keys.atlassian.com",
        ],
        "TENANT_HOSTS": [".atlassian.net", ".jira.com"],
        "JWT_LEEWAY": 30,
        "JWT_MAX_LIFETIME": 3600,
        "KEY_TTL": 86400,
        # Key fetches: connect/read timeout per attempt, wall-clock budget per server and in all.
        "KEY_FETCH_TIMEOUT": 2.0,
        "KEY_FETCH_SERVER_DEADLINE": 3.0,
        "KEY_FETCH_DEADLINE": 5.0,
        # A kid every server answered 403/404/410 for is refused without asking again for this long.
        "KEY_NEGATIVE_TTL": 60,
        # A key server down (refused, reset, TLS, timeout, 5xx) this many times in a row is skipped
        # for KEY_FAILURE_BACKOFF seconds, then probed once.
        "KEY_SERVER_FAILURES": 3,
        "KEY_FAILURE_BACKOFF": 5,
        # How long past its TTL a cached key may still be used while every key server fails.
        "KEY_STALE_IF_ERROR": 7 * 86400,
        # Largest lifecycle request body, bytes.
        "LIFECYCLE_MAX_BODY": 64 * 1024,
        # Largest webhook body, bytes (CONNECT_WEBHOOK_MAX_BODY).
        "WEBHOOK_MAX_BODY": 5 * 1024 * 1024,
        "DESCRIPTOR_PATH": Path(__file__).resolve().parent.parent / "atlassian-connect.json",
    },
    mandatory=("BASE_URL", "APP_KEY"),
)
