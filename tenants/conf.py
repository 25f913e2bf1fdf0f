"""The tenants app's settings object, and the small settings machinery both apps share.

Django's ``settings`` holds one dict per app (``TENANTS`` here, ``CONNECT`` in ``lifecycle``),
built from the environment in ``connectsite/settings.py``. An :class:`AppSettings` reads that
dict at call time, fills in defaults, rejects unknown names, and is reset whenever the
setting changes (``override_settings`` in tests), so nothing is frozen at import time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed


class AppSettings:
    """Attribute access to one settings dict, with defaults and validation."""

    def __init__(self, setting_name: str, defaults: Mapping[str, Any], mandatory: Iterable[str] = ()):
        self.setting_name = setting_name
        self.defaults = dict(defaults)
        self.mandatory = tuple(mandatory)
        self._cache: dict[str, Any] | None = None
        setting_changed.connect(self._on_setting_changed, weak=False)

    def _load(self) -> dict[str, Any]:
        user = getattr(settings, self.setting_name, None) or {}
        if not isinstance(user, Mapping):
            raise ImproperlyConfigured(f"settings.{self.setting_name} must be a dict.")
        unknown = sorted(set(user) - set(self.defaults))
        if unknown:
            raise ImproperlyConfigured(
                f"settings.{self.setting_name} has unknown names {unknown}; "
                f"known names are {sorted(self.defaults)}."
            )
        merged = {**self.defaults, **user}
        missing = [name for name in self.mandatory if merged.get(name) in (None, "")]
        if missing:
            raise ImproperlyConfigured(f"settings.{self.setting_name} needs {missing}.")
        return merged

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self.defaults:
            raise AttributeError(f"{self.setting_name} has no setting {name!r}")
        if self._cache is None:
            self._cache = self._load()
        return self._cache[name]

    def reload(self) -> None:
        """Forget the cached values; the next access reads Django's settings again."""
        self._cache = None

    def _on_setting_changed(self, *, setting: str, **_: Any) -> None:
        if setting == self.setting_name:
            self.reload()


tenant_settings = AppSettings(
    "TENANTS",
    defaults={
        # Fernet keys, newest first: the first encrypts, all decrypt.
        "SECRET_KEYS": [],
        # DEBUG only: derive a key from SECRET_KEY when SECRET_KEYS is empty.
        "DERIVE_DEVELOPMENT_KEY": False,
        # Largest JSON snapshot of a request body kept on an audit row, in bytes.
        "AUDIT_BODY_MAX_BYTES": 4096,
        # Keep webhook bodies on WebhookDelivery rows (they hold users' data; off by default).
        "STORE_WEBHOOK_BODIES": False,
        # prune_lifecycle_events defaults: age in days after which rows are removed.
        "WEBHOOK_RETENTION_DAYS": 30,
        "EVENT_RETENTION_DAYS": 365,
    },
)
