"""Django settings: the only place the environment is read.

Every variable is documented in ``.env.example`` and in the README's configuration table.
A production-critical variable that is missing or malformed stops start-up with one line
naming it (``manage.py`` prints just that line); in DEBUG, safe local defaults apply.
Apps read their own settings objects (``lifecycle.conf``, ``tenants.conf``) at call time.
"""

from __future__ import annotations

import json
import warnings
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from connectsite.environment import (
    BASE_DIR,
    boolean,
    env,
    fail,
    http_url,
    integer,
    is_loopback_ip,
    read_declared,
    read_dotenv,
    strings,
    text,
)
from lifecycle.conf import FORGE_APP_ARI, PRODUCTION_FORGE_JWKS_URL, PRODUCTION_KEY_SERVERS, ConnectSettings
from tenants.conf import TenantSettings
from tenants.crypto import SecretKeyError, parse_keys

DESCRIPTOR_PATH = BASE_DIR / "atlassian-connect.json"
read_dotenv()

# --- Core Django ------------------------------------------------------------------------------

DEBUG = boolean("DEBUG", False)

SECRET_KEY = text("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise fail("SECRET_KEY", "is required when DEBUG is off")
    SECRET_KEY = "django-insecure-local-development-only-not-for-production"  # noqa: S105

ALLOWED_HOSTS = strings("ALLOWED_HOSTS", ["localhost", "127.0.0.1"])

SECURE_SSL_REDIRECT = boolean("SECURE_SSL_REDIRECT", False)
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips it from clients).
if boolean("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = integer("SECURE_HSTS_SECONDS", 0, unit="seconds", minimum=0, maximum=2 * 365 * 86400)
SECURE_HSTS_INCLUDE_SUBDOMAINS = boolean("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = boolean("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# No page may be framed, except the app's iframe pages by their tenant's own site
# (lifecycle.decorators.connect_page replaces frame-ancestors for those responses).
# Only frame-ancestors: default-src None drops django-csp's default 'self' (admin and pages keep
# their own assets policy-free, as before).
CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": None, "frame-ancestors": ["'none'"]}}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_tasks",
    "django_tasks_db",
    "tenants",
    "audit",
    "lifecycle",
]

MIDDLEWARE = [
    # /healthz for load balancers (by IP, plain http) before the host check and https redirect.
    "connectsite.middleware.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "connectsite.middleware.CSPMiddleware",  # django-csp's, skipping bodiless responses
    "lifecycle.middleware.ConnectVerificationMiddleware",
]

ROOT_URLCONF = "connectsite.urls"
WSGI_APPLICATION = "connectsite.wsgi.application"
ASGI_APPLICATION = "connectsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------

try:
    _default_db = env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
except (ImproperlyConfigured, ValueError, KeyError) as exc:
    raise fail("DATABASE_URL", f"not a database URL ({type(exc).__name__})") from None
if "." not in _default_db.get("ENGINE", ""):
    raise fail("DATABASE_URL", "not a database URL: use sqlite:///path or postgres://user@host:port/name")

if _default_db["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default must cope with concurrent writers: wait for the lock instead of
    # failing at once, take the write lock when a transaction starts (no upgrade deadlocks),
    # and let readers proceed during a write (WAL).
    _default_db["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
# Connections are kept between requests (an SQLite file too: opening it and running the pragmas
# above on every request cost a webhook about a third of its time, bench/webhook_ab.py).
_default_db["CONN_MAX_AGE"] = integer("DATABASE_CONN_MAX_AGE", 60, unit="seconds", minimum=0, maximum=86400)
if _default_db["ENGINE"] != "django.db.backends.sqlite3":
    # Off by default: a check is one more round trip on every request. A connection that broke
    # meanwhile fails that one request (503, Jira retries) and is replaced.
    _default_db["CONN_HEALTH_CHECKS"] = boolean("DATABASE_CONN_HEALTH_CHECKS", False)

DATABASES = {"default": _default_db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache ------------------------------------------------------------------------------------

try:
    CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}
    if CACHES["default"]["BACKEND"].endswith("RedisCache"):
        # Django's backend, keeping one client per connection pool (connectsite/cache.py).
        CACHES["default"]["BACKEND"] = "connectsite.cache.RedisCache"
        # A Redis that accepts connections but never answers must fail in seconds, not hang requests.
        CACHES["default"].setdefault("OPTIONS", {}).update(socket_connect_timeout=2, socket_timeout=2)
except (ImproperlyConfigured, ValueError, KeyError) as exc:
    raise fail(
        "CACHE_URL", f"not a cache URL ({type(exc).__name__}), e.g. redis://127.0.0.1:6379/0"
    ) from None

# --- Background tasks (webhook deliveries) -----------------------------------------------------
# Django's Tasks framework API (the django-tasks backport). The default backend is the database:
# a webhook delivery and its task commit in one transaction; `manage.py db_worker` runs them.
# TASKS_RQ_URL (a Redis URL) selects the RQ backend instead; `manage.py rqworker --with-scheduler
# --job-class django_tasks_rq.Job` runs them (the scheduler runs retries at their time).
TASKS_RQ_URL = text("TASKS_RQ_URL", "")
if TASKS_RQ_URL:
    if not TASKS_RQ_URL.startswith(("redis://", "rediss://", "unix://")):
        raise fail("TASKS_RQ_URL", "must be a Redis URL, e.g. redis://127.0.0.1:6379/1")
    INSTALLED_APPS.insert(INSTALLED_APPS.index("django_tasks_db"), "django_rq")
    TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default"]}}
    # An unreachable Redis must fail a request in seconds (redis-py reads this from the URL; a
    # read timeout would cut the worker's blocking wait for jobs, so none is set).
    _sep = "&" if "?" in TASKS_RQ_URL else "?"
    _rq_url = (
        TASKS_RQ_URL
        if "socket_connect_timeout" in TASKS_RQ_URL
        else f"{TASKS_RQ_URL}{_sep}socket_connect_timeout=2"
    )
    RQ_QUEUES = {"default": {"URL": _rq_url, "DEFAULT_TIMEOUT": 900}}
else:
    # django-tasks-db's backend with a one-statement enqueue (tenants/task_backend.py).
    TASKS = {"default": {"BACKEND": "tenants.task_backend.DatabaseBackend"}}

# --- Internationalisation, static files -------------------------------------------------------

LANGUAGE_CODE = "en-us"
# Times to the second with their zone, everywhere in admin (connectsite/formats/en/formats.py).
FORMAT_MODULE_PATH = ["connectsite.formats"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# No uploads are served; set explicitly so that no handler treats "" as "serve the project folder"
# (Django's live test server does, with the default empty MEDIA_URL).
MEDIA_URL = "/media/"
MEDIA_ROOT = BASE_DIR / "media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Compressed, served by whitenoise from STATIC_ROOT (manage.py collectstatic) or, in DEBUG,
    # straight from the apps.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG
if DEBUG:
    # In DEBUG, files come from the apps; the STATIC_ROOT of collectstatic need not exist.
    warnings.filterwarnings("ignore", message="No directory at", module="whitenoise.base")

# --- Atlassian Connect ------------------------------------------------------------------------

_base_url = text("CONNECT_BASE_URL", "")
if not _base_url:
    if not DEBUG:
        raise fail("CONNECT_BASE_URL", "is required when DEBUG is off (the app's public https baseUrl)")
    _base_url = "http://localhost:8000"
CONNECT_BASE_URL = http_url("CONNECT_BASE_URL", _base_url, https_unless_loopback=False)

# Jira calls the app at its own host, so that host is always allowed; ALLOWED_HOSTS names extra ones.
_base_host = urlsplit(CONNECT_BASE_URL).hostname or ""
_base_host = f"[{_base_host}]" if ":" in _base_host else _base_host
if _base_host not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append(_base_host)


def _descriptor_key() -> str:
    try:
        return str(json.loads(DESCRIPTOR_PATH.read_text(encoding="utf-8"))["key"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        problem = f"not set, and {DESCRIPTOR_PATH.name} has no readable key ({type(exc).__name__})"
        raise fail("CONNECT_APP_KEY", problem) from None


# Each CONNECT_* variable is declared once, with its type and default, in lifecycle.conf.
CONNECT = read_declared(
    ConnectSettings,
    skip=(
        "BASE_URL",
        "APP_KEY",
        "EXTRA_AUDIENCES",
        "KEY_SERVERS",
        "SIMULATED_JIRA",
        "FORGE_APP_ID",
        "FORGE_JWKS_URL",
    ),
)
CONNECT.update(
    BASE_URL=CONNECT_BASE_URL,
    APP_KEY=text("CONNECT_APP_KEY", "") or _descriptor_key(),
    EXTRA_AUDIENCES=[
        http_url("CONNECT_EXTRA_AUDIENCES", item, https_unless_loopback=False)
        for item in strings("CONNECT_EXTRA_AUDIENCES", [])
    ],
    KEY_SERVERS=[
        http_url("CONNECT_KEY_SERVERS", item, https_unless_loopback=True)
        for item in strings("CONNECT_KEY_SERVERS", list(PRODUCTION_KEY_SERVERS))
    ],
    DESCRIPTOR_PATH=DESCRIPTOR_PATH,
    FORGE_JWKS_URL=http_url(
        "FORGE_JWKS_URL", text("FORGE_JWKS_URL", PRODUCTION_FORGE_JWKS_URL), https_unless_loopback=True
    ),
)
_forge_app_id = text("FORGE_APP_ID", "")
if _forge_app_id and not FORGE_APP_ARI.fullmatch(_forge_app_id):
    raise fail(
        "FORGE_APP_ID", "must be the app's ARI, ari:cloud:ecosystem::app/<uuid> (app.id in manifest.yml)"
    )
CONNECT["FORGE_APP_ID"] = _forge_app_id
CONNECT["TENANT_HOSTS"] = [item.lower() for item in CONNECT["TENANT_HOSTS"]]
# The simulator's fake Jira (`manage.py connect_simulate`, `make demo`): a tenant on a loopback
# site is never genuine, so this exists with DEBUG on only.
_simulated_jira = text("CONNECT_SIMULATED_JIRA", "")
if _simulated_jira:
    if not DEBUG:
        raise fail("CONNECT_SIMULATED_JIRA", "is for a DEBUG demo only: unset it in production")
    _simulated_jira = http_url("CONNECT_SIMULATED_JIRA", _simulated_jira, https_unless_loopback=True)
    _parts = urlsplit(_simulated_jira)
    if _parts.path or not (_parts.hostname == "localhost" or is_loopback_ip(_parts.hostname or "")):
        raise fail("CONNECT_SIMULATED_JIRA", "must be a loopback origin such as http://127.0.0.1:8766")
    CONNECT["SIMULATED_JIRA"] = _simulated_jira
# Webhook bodies may be larger than Django's 2.5 MB default; the view checks the exact cap.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(2_621_440, CONNECT["WEBHOOK_MAX_BODY"])
if not CONNECT["KEY_SERVERS"]:
    raise fail("CONNECT_KEY_SERVERS", "lists no key server")

# --- Tenant secrets ---------------------------------------------------------------------------

LIST_HOW_TO = "write the keys comma-separated, newest first, without spaces or quotes: KEY1,KEY2"
GENERATE_KEY = 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'


def _secret_keys() -> list[str]:
    """TENANT_SECRET_KEYS, strictly: a space or a quote inside an entry would silently drop a key."""
    raw = text("TENANT_SECRET_KEYS", "")
    if not raw:
        return []
    keys = [item.strip() for item in raw.split(",")]
    for position, key in enumerate(keys, start=1):
        if not key:
            raise fail("TENANT_SECRET_KEYS", f"entry {position} is empty; {LIST_HOW_TO}")
        if any(char.isspace() for char in key):
            raise fail("TENANT_SECRET_KEYS", f"entry {position} holds whitespace; {LIST_HOW_TO}")
        if key[0] in "\"'" or key[-1] in "\"'":
            raise fail("TENANT_SECRET_KEYS", f"entry {position} is wrapped in quotes; {LIST_HOW_TO}")
    for position, key in enumerate(keys, start=1):
        try:
            parse_keys([key])
        except SecretKeyError:
            problem = f"entry {position} is not a Fernet key (44 characters of url-safe base64)"
            raise fail("TENANT_SECRET_KEYS", f"{problem}; generate one with: {GENERATE_KEY}") from None
    return keys


TENANT_SECRET_KEYS = _secret_keys()
if not TENANT_SECRET_KEYS and not DEBUG:
    raise fail("TENANT_SECRET_KEYS", f"is required when DEBUG is off; generate one with: {GENERATE_KEY}")

# Each TENANT_* variable is declared once, with its type and default, in tenants.conf.
TENANTS = read_declared(TenantSettings, skip=("SECRET_KEYS",))
TENANTS.update(
    SECRET_KEYS=TENANT_SECRET_KEYS,
    # Only in DEBUG, and only without TENANT_SECRET_KEYS: a key derived from SECRET_KEY
    # (system check tenants.W001 says so at start-up).
    DERIVE_DEVELOPMENT_KEY=DEBUG and not TENANT_SECRET_KEYS,
)

# --- Logging: reason codes and fingerprints only, never tokens, bodies or secrets -------------

LOG_LEVEL = text("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise fail("LOG_LEVEL", f"expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {LOG_LEVEL[:20]!r}")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # SafeFormatter escapes control characters: a request's path or header never forges a line.
    "formatters": {
        "plain": {
            "()": "connectsite.logs.SafeFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        }
    },
    "filters": {
        "one_line_warning": {"()": "connectsite.logs.OneLineWarning"},
        "no_query_string": {"()": "connectsite.logs.NoQueryString"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "lifecycle": {"level": LOG_LEVEL},
        "tenants": {"level": LOG_LEVEL},
        # Django logs request bodies nowhere, but its 4xx/5xx lines carry the path only.
        "django.request": {"level": "ERROR"},
        # runserver's request lines (make run, make demo) without query strings: a page load's
        # URL carries its token (?jwt=...).
        "django.server": {
            "level": "INFO",
            "handlers": ["console"],
            "filters": ["no_query_string"],
            "propagate": False,
        },
        # A request for a host not in ALLOWED_HOSTS: one line at WARNING, not a traceback.
        "django.security.DisallowedHost": {
            "level": "WARNING",
            "filters": ["one_line_warning"],
            "handlers": ["console"],
            "propagate": False,  # in DEBUG, Django's own "django" handler would print it again
        },
        # send_robust logs a failing receiver's message and traceback, which may quote a webhook
        # body; tenants.services logs the receiver, delivery and exception type instead.
        "django.dispatch": {"level": "CRITICAL"},
    },
}
