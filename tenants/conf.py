"""The tenants app's settings object, and the small settings machinery both apps share.

Each app declares its settings once, as a frozen dataclass: the name, the type, the default and
(in the field's metadata) the environment variable ``connectsite/settings.py`` reads it from.
Django's ``settings`` holds one dict per app (``TENANTS`` here, ``CONNECT`` in ``lifecycle``);
an :class:`AppSettings` turns that dict into the dataclass at call time (defaults filled in,
unknown names and wrong types refused) and is reset whenever the setting changes
(``override_settings`` in tests), so nothing is frozen at import time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar, cast, get_type_hints

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

T = TypeVar("T")


def variable(name: str, *, unit: str = "", minimum: int = 0, maximum: int = 0) -> dict[str, Any]:
    """Field metadata: ``connectsite/settings.py`` reads this setting from variable ``name``.

    ``unit``, ``minimum`` and ``maximum`` apply to ``int`` fields (the unit names the error).
    """
    return {"variable": name, "unit": unit, "minimum": minimum, "maximum": maximum}


def _coerce(owner: str, name: str, hint: Any, value: Any) -> Any:
    """``value`` as the declared type (int, float, bool, str, Path, tuple[str, ...]), or an error."""
    problem = f"settings.{owner}[{name!r}] must be"
    if hint is bool:
        if not isinstance(value, bool):
            raise ImproperlyConfigured(f"{problem} True or False, not {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ImproperlyConfigured(f"{problem} a whole number, not {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ImproperlyConfigured(f"{problem} a number, not {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ImproperlyConfigured(f"{problem} a string, not {type(value).__name__}")
        return value
    if hint is Path:
        if not isinstance(value, str | Path):
            raise ImproperlyConfigured(f"{problem} a path, not {type(value).__name__}")
        return Path(value)
    if isinstance(value, str) or not all(isinstance(item, str) for item in value):
        raise ImproperlyConfigured(f"{problem} a list of strings")
    return tuple(value)


class AppSettings(Generic[T]):
    """Typed attribute access to one settings dict through its declaration ``T`` (a dataclass)."""

    def __init__(self, setting_name: str, declaration: type[T]) -> None:
        self.setting_name = setting_name
        self.declaration = declaration
        self._current: T | None = None
        setting_changed.connect(self._on_setting_changed, weak=False)

    def load(self) -> T:
        """The settings now in force; ``ImproperlyConfigured`` names a bad or unknown entry."""
        user = getattr(settings, self.setting_name, None) or {}
        if not isinstance(user, Mapping):
            raise ImproperlyConfigured(f"settings.{self.setting_name} must be a dict.")
        known = {item.name for item in dataclasses.fields(cast(Any, self.declaration))}
        unknown = sorted(set(user) - known)
        if unknown:
            raise ImproperlyConfigured(
                f"settings.{self.setting_name} has unknown names {unknown}; known names are {sorted(known)}."
            )
        hints = get_type_hints(self.declaration)
        values = {name: _coerce(self.setting_name, name, hints[name], value) for name, value in user.items()}
        try:
            return self.declaration(**values)
        except ValueError as exc:
            raise ImproperlyConfigured(f"settings.{self.setting_name}: {exc}") from exc

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if self._current is None:
            self._current = self.load()
        try:
            return getattr(self._current, name)
        except AttributeError:
            raise AttributeError(f"{self.setting_name} has no setting {name!r}") from None

    def reload(self) -> None:
        """Forget the loaded values; the next access reads Django's settings again."""
        self._current = None

    def _on_setting_changed(self, *, setting: str, **_: Any) -> None:
        if setting == self.setting_name:
            self.reload()


@dataclass(frozen=True)
class TenantSettings:
    """``settings.TENANTS``: every tenants setting, its type, default and variable."""

    # Fernet keys, newest first: the first encrypts, all decrypt (read with rules of their own).
    SECRET_KEYS: tuple[str, ...] = field(default=(), metadata=variable("TENANT_SECRET_KEYS"))
    # DEBUG only: derive a key from SECRET_KEY when SECRET_KEYS is empty.
    DERIVE_DEVELOPMENT_KEY: bool = False
    # Largest JSON snapshot of a request body kept on an audit row, in bytes.
    AUDIT_BODY_MAX_BYTES: int = 4096
    # Unverified rejections of one kind (event, reason, path, source address) within this many
    # seconds share one audit row, with a count.
    AUDIT_FOLD_SECONDS: int = 300
    # Keep webhook bodies on WebhookDelivery rows (they hold users' data; off by default).
    STORE_WEBHOOK_BODIES: bool = field(default=False, metadata=variable("TENANT_STORE_WEBHOOK_BODIES"))
    # Webhook deliveries are processed by a background task: a receiver that raises is retried
    # after about RETRY_DELAY x 2^(attempt-1) seconds (with jitter, at most an hour), and after
    # MAX_ATTEMPTS attempts the delivery is parked as failed. An attempt still running after
    # PROCESSING_TIMEOUT seconds is interrupted (db_worker) and retried; one whose worker died is
    # given back one to two minutes after that.
    WEBHOOK_MAX_ATTEMPTS: int = field(
        default=8, metadata=variable("TENANT_WEBHOOK_MAX_ATTEMPTS", unit="attempts", minimum=1, maximum=100)
    )
    WEBHOOK_RETRY_DELAY: int = field(
        default=30, metadata=variable("TENANT_WEBHOOK_RETRY_DELAY", unit="seconds", minimum=0, maximum=3600)
    )
    WEBHOOK_RETRY_MAX_DELAY: int = 3600
    WEBHOOK_PROCESSING_TIMEOUT: int = field(
        default=600,
        metadata=variable("TENANT_WEBHOOK_PROCESSING_TIMEOUT", unit="seconds", minimum=1, maximum=86400),
    )
    # Verified tenants (row snapshot and secret) each worker process keeps for webhooks, least
    # recently used out first, each for at most 10 minutes (tenants/tenant_cache.py MAX_AGE); every
    # use is checked against the row by the delivery's INSERT
    # (tenants/tenant_cache.py). 0 turns it off.
    VERIFY_CACHE_SIZE: int = field(
        default=1000,
        metadata=variable("TENANT_VERIFY_CACHE_SIZE", unit="tenants", minimum=0, maximum=1_000_000),
    )
    # prune_lifecycle_events defaults: age in days after which rows are removed.
    WEBHOOK_RETENTION_DAYS: int = field(
        default=30, metadata=variable("TENANT_WEBHOOK_RETENTION_DAYS", unit="days", minimum=1, maximum=3650)
    )
    EVENT_RETENTION_DAYS: int = field(
        default=365, metadata=variable("TENANT_EVENT_RETENTION_DAYS", unit="days", minimum=1, maximum=36500)
    )


_loader = AppSettings("TENANTS", TenantSettings)
tenant_settings = cast(TenantSettings, _loader)


def load() -> TenantSettings:
    """Validate ``settings.TENANTS`` now (``ImproperlyConfigured`` names a bad entry); the
    app's ``ready()`` calls it so that a bad value stops start-up, not the first request."""
    return _loader.load()
