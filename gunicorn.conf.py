"""gunicorn settings: `gunicorn connectsite.wsgi` reads this file from the project folder.

Values come from the environment or `.env` (the environment wins), like Django's settings: the
address from HOST/PORT, workers from WEB_CONCURRENCY (default 2 x cores + 1). A malformed value,
or a Django setting that would stop the app (a bad TENANT_SECRET_KEYS, say), stops gunicorn here,
in the master, with one line instead of workers failing to boot. The access log leaves out query
strings and headers: no token ever reaches it.
"""

import multiprocessing
import os
import subprocess
import sys

from django.core.exceptions import ImproperlyConfigured
from gunicorn import glogging

from connectsite.environment import fail, integer, read_dotenv, text
from connectsite.logs import escape_control

try:
    read_dotenv()
    host = text("HOST", "0.0.0.0")  # noqa: S104 - behind a proxy
    if ":" in host and not host.startswith("["):
        raise fail("HOST", f"{host[:40]!r} holds a port: give the address alone and the port in PORT")
    bind = f"{host}:{integer('PORT', 8000, unit='', minimum=1, maximum=65535)}"
    workers = integer(
        "WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1, unit="workers", minimum=1, maximum=256
    )
    # Threads per worker; above 1, gunicorn uses gthread workers. bench/ measured sync workers ahead
    # (interleaved A/B: 530 against 408 verified webhooks/s with 2 workers), so 1 is the default.
    threads = integer("GUNICORN_THREADS", 1, unit="threads", minimum=1, maximum=256)
    timeout = integer("GUNICORN_TIMEOUT", 30, unit="seconds", minimum=1, maximum=3600)
    max_requests = integer("GUNICORN_MAX_REQUESTS", 0, unit="requests", minimum=0, maximum=10**9)
    # "-" (the default) is standard output; "off", or set but empty, turns it off.
    accesslog = text("GUNICORN_ACCESS_LOG", "" if "GUNICORN_ACCESS_LOG" in os.environ else "-")
    accesslog = None if accesslog.lower() in {"", "off"} else accesslog
    forwarded_allow_ips = text("FORWARDED_ALLOW_IPS", "127.0.0.1")
except ImproperlyConfigured as exc:
    sys.stderr.write(f"Configuration error: {exc}\n")
    sys.exit(2)

# The app's own settings, checked here rather than in every worker that fails to boot. In a child
# process: the master stays free of them, so a HUP reload picks up a changed .env.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "connectsite.settings")
_CHECK = """
import sys, django
from django.core.exceptions import ImproperlyConfigured
try:
    django.setup()
except ImproperlyConfigured as exc:
    sys.stderr.write(f"Configuration error: {exc}\\n")
    sys.exit(2)
"""
_check = subprocess.run([sys.executable, "-c", _CHECK], capture_output=True, text=True, check=False)  # noqa: S603
if _check.returncode != 0:
    sys.stderr.write(_check.stderr)
    sys.exit(2)


class SafeAccessLogger(glogging.Logger):
    """gunicorn's logger with every request-derived atom (the decoded path above all) escaped."""

    def atoms(self, resp, req, environ, request_time):  # type: ignore[no-untyped-def]
        return {
            key: escape_control(value) if isinstance(value, str) else value
            for key, value in super().atoms(resp, req, environ, request_time).items()
        }


logger_class = SafeAccessLogger
graceful_timeout = 20
keepalive = 5
max_requests_jitter = max_requests // 10
# %(U)s is the path without the query string; no headers, so no Authorization.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
errorlog = "-"
