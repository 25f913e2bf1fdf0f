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
        "DESCRIPTOR_PATH": Path(__file__).resolve().parent.parent / "atlassian-connect.json",
    },
    mandatory=("BASE_URL", "APP_KEY"),
)
