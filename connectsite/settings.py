"""Django settings: the only place the environment is read.

Every variable is documented in ``.env.example`` and in the README's configuration table.
A production-critical variable that is missing or malformed stops start-up with one line
naming it (``manage.py`` prints just that line); in DEBUG, safe local defaults apply.
Apps read their own settings objects (``lifecycle.conf``, ``tenants.conf``) at call time.
"""

from __future__ import annotations

import ipaddress
import json
import os
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
DESCRIPTOR_PATH = BASE_DIR / "atlassian-connect.json"

env = environ.Env()
if os.environ.get("CONNECT_READ_DOTENV", "1") != "0" and (BASE_DIR / ".env").is_file():
    # Values already in the environment win over the file.
    environ.Env.read_env(BASE_DIR / ".env")


class SettingError(ImproperlyConfigured):
    """A missing or malformed environment variable; the message names it and the fix."""


def _fail(name: str, problem: str) -> SettingError:
    return SettingError(f"{name}: {problem} (set it in the environment or in .env; see .env.example)")


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise _fail(name, f"expected true/false, got {raw.strip()[:20]!r}")


def _int(name: str, default: int, minimum: int, maximum: int) -> int:
    raw = os.environ.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _fail(name, f"expected a whole number of seconds, got {raw[:20]!r}") from None
    if not minimum <= value <= maximum:
        raise _fail(name, f"must be between {minimum} and {maximum}, got {value}")
    return value


def _list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def _is_loopback_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _http_url(name: str, value: str, *, https_unless_loopback: bool) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise _fail(name, f"{value[:80]!r} is not an absolute http(s) URL")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise _fail(name, f"{value[:80]!r} must not carry a query, fragment or user info")
    if https_unless_loopback and parts.scheme != "https" and not _is_loopback_host(parts.hostname):
        raise _fail(name, f"{value[:80]!r} must be https (plain http is allowed for loopback hosts only)")
    return value.rstrip("/")


# --- Core Django ------------------------------------------------------------------------------

DEBUG = _bool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "").strip()
if not SECRET_KEY:
    if not DEBUG:
        raise _fail("SECRET_KEY", "is required when DEBUG is off")
    SECRET_KEY = "django-insecure-local-development-only-not-for-production"  # noqa: S105

ALLOWED_HOSTS = _list("ALLOWED_HOSTS", ["localhost", "127.0.0.1"])

SECURE_SSL_REDIRECT = _bool("SECURE_SSL_REDIRECT", False)
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips it from clients).
if _bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = _int("SECURE_HSTS_SECONDS", 0, 0, 2 * 365 * 86400)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = _bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "tenants",
    "lifecycle",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
    raise _fail("DATABASE_URL", f"not a database URL ({type(exc).__name__})") from None
if "." not in _default_db.get("ENGINE", ""):
    raise _fail("DATABASE_URL", "not a database URL: use sqlite:///path or postgres://user@host:port/name")

if _default_db["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default must cope with concurrent writers: wait for the lock instead of
    # failing at once, take the write lock when a transaction starts (no upgrade deadlocks),
    # and let readers proceed during a write (WAL).
    _default_db["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    _default_db["CONN_MAX_AGE"] = _int("DATABASE_CONN_MAX_AGE", 60, 0, 86400)
    # Off by default: a check is one more round trip on every request. A connection that broke
    # meanwhile fails that one request (503, Jira retries) and is replaced.
    _default_db["CONN_HEALTH_CHECKS"] = _bool("DATABASE_CONN_HEALTH_CHECKS", False)

# "audit" is a second connection to the same database: audit rows written through it survive
# a rollback of the caller's transaction (see tenants.models.LifecycleEventManager.record).
DATABASES = {
    "default": _default_db,
    "audit": {**_default_db, "TEST": {"MIRROR": "default"}},
}
DATABASE_ROUTERS = ["tenants.routers.AuditRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache ------------------------------------------------------------------------------------

try:
    CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}
except (ImproperlyConfigured, ValueError, KeyError) as exc:
    raise _fail(
        "CACHE_URL", f"not a cache URL ({type(exc).__name__}), e.g. redis://127.0.0.1:6379/0"
    ) from None

# --- Internationalisation, static files -------------------------------------------------------

LANGUAGE_CODE = "en-us"
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

PRODUCTION_KEY_SERVERS = [
    "https://asap-distribution.us-west-2.prod.atl-asap.net",
    "https://connect-install-keys.atlassian.com",
]

_base_url = os.environ.get("CONNECT_BASE_URL", "").strip()
if not _base_url:
    if not DEBUG:
        raise _fail("CONNECT_BASE_URL", "is required when DEBUG is off (the app's public https baseUrl)")
    _base_url = "http://localhost:8000"
CONNECT_BASE_URL = _http_url("CONNECT_BASE_URL", _base_url, https_unless_loopback=False)

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
        raise _fail("CONNECT_APP_KEY", problem) from None


CONNECT_APP_KEY = os.environ.get("CONNECT_APP_KEY", "").strip() or _descriptor_key()

CONNECT = {
    "BASE_URL": CONNECT_BASE_URL,
    "APP_KEY": CONNECT_APP_KEY,
    "EXTRA_AUDIENCES": [
        _http_url("CONNECT_EXTRA_AUDIENCES", item, https_unless_loopback=False)
        for item in _list("CONNECT_EXTRA_AUDIENCES", [])
    ],
    "KEY_SERVERS": [
        _http_url("CONNECT_KEY_SERVERS", item, https_unless_loopback=True)
        for item in _list("CONNECT_KEY_SERVERS", PRODUCTION_KEY_SERVERS)
    ],
    "TENANT_HOSTS": [item.lower() for item in _list("CONNECT_TENANT_HOSTS", [".atlassian.net", ".jira.com"])],
    "JWT_LEEWAY": _int("CONNECT_JWT_LEEWAY", 30, 0, 600),
    "JWT_MAX_LIFETIME": _int("CONNECT_JWT_MAX_LIFETIME", 3600, 1, 86400),
    "KEY_TTL": _int("CONNECT_KEY_TTL", 86400, 60, 30 * 86400),
    "WEBHOOK_MAX_BODY": _int("CONNECT_WEBHOOK_MAX_BODY", 5 * 1024 * 1024, 1024, 100 * 1024 * 1024),
    "DESCRIPTOR_PATH": DESCRIPTOR_PATH,
}
# Webhook bodies may be larger than Django's 2.5 MB default; the view checks the exact cap.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(2_621_440, CONNECT["WEBHOOK_MAX_BODY"])
if not CONNECT["KEY_SERVERS"]:
    raise _fail("CONNECT_KEY_SERVERS", "lists no key server")

# --- Tenant secrets ---------------------------------------------------------------------------

TENANT_SECRET_KEYS = _list("TENANT_SECRET_KEYS", [])
if not TENANT_SECRET_KEYS and not DEBUG:
    raise _fail(
        "TENANT_SECRET_KEYS",
        "is required when DEBUG is off; generate one with: python -c "
        '"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"',
    )

TENANTS = {
    "SECRET_KEYS": TENANT_SECRET_KEYS,
    "STORE_WEBHOOK_BODIES": _bool("TENANT_STORE_WEBHOOK_BODIES", False),
    "WEBHOOK_RETENTION_DAYS": _int("TENANT_WEBHOOK_RETENTION_DAYS", 30, 1, 3650),
    "EVENT_RETENTION_DAYS": _int("TENANT_EVENT_RETENTION_DAYS", 365, 1, 36500),
    # Only in DEBUG, and only without TENANT_SECRET_KEYS: a key derived from SECRET_KEY
    # (system check tenants.W001 says so at start-up).
    "DERIVE_DEVELOPMENT_KEY": DEBUG and not TENANT_SECRET_KEYS,
}

# --- Logging: reason codes and fingerprints only, never tokens, bodies or secrets -------------

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise _fail("LOG_LEVEL", f"expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {LOG_LEVEL[:20]!r}")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "lifecycle": {"level": LOG_LEVEL},
        "tenants": {"level": LOG_LEVEL},
        # Django logs request bodies nowhere, but its 4xx/5xx lines carry the path only.
        "django.request": {"level": "ERROR"},
        # send_robust logs a failing receiver's message and traceback, which may quote a webhook
        # body; tenants.services logs the receiver, delivery and exception type instead.
        "django.dispatch": {"level": "CRITICAL"},
    },
}
