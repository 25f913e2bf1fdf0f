"""State changes of an installation. Each runs in one transaction with the tenant row locked.

These functions trust their caller: ``lifecycle`` verifies a request before it calls them.
Signals (``tenants.signals``) are sent only after the transaction commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from tenants import signals
from tenants.crypto import SecretDecryptionError
from tenants.models import BODY_FIELDS, Installation

# Body fields that are not columns of their own and are not kept in ``extra`` either.
_NOT_EXTRA = frozenset(BODY_FIELDS) | {"sharedSecret"}


class TenantNotInstalled(Exception):
    """The tenant does not exist or has uninstalled the app."""


@dataclass(frozen=True)
class InstallResult:
    installation: Installation
    created: bool
    previous_base_url: str | None
    secret_changed: bool


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def install(body: Mapping[str, Any]) -> InstallResult:
    """Create or update the tenant of a verified ``installed`` body; the new secret replaces the old.

    Safe under concurrency: the row is locked (``SELECT ... FOR UPDATE``); when two first
    installs race, the loser's insert fails on the unique ``client_key`` and it updates the
    winner's row instead (``get_or_create`` retries the read after the conflict).
    """
    client_key = str(body["clientKey"])
    secret = str(body["sharedSecret"])
    now = timezone.now()
    with transaction.atomic():
        installation, created = Installation.objects.select_for_update().get_or_create(
            client_key=client_key,
            defaults={
                "base_url": _text(body.get("baseUrl")),
                "shared_secret": secret,
                "installed_at": now,
                "secret_updated_at": now,
            },
        )
        previous_base_url = None
        secret_changed = created
        if not created:
            if installation.base_url != _text(body.get("baseUrl")):
                previous_base_url = installation.base_url
            secret_changed = not installation.has_secret or _differs(installation, secret)
            if installation.state != Installation.State.INSTALLED:
                installation.installed_at = now
                installation.uninstalled_at = None
            installation.state = Installation.State.INSTALLED
            if secret_changed:
                installation.shared_secret = secret
                installation.secret_updated_at = now
        for name, column in BODY_FIELDS.items():
            if name != "clientKey":
                setattr(installation, column, _text(body.get(name)))
        installation.extra = {k: v for k, v in body.items() if k not in _NOT_EXTRA}
        installation.save()
        result = InstallResult(installation, created, previous_base_url, secret_changed)
        transaction.on_commit(
            lambda: signals.tenant_installed.send(
                sender=Installation,
                installation=installation,
                created=created,
                previous_base_url=previous_base_url,
                secret_changed=secret_changed,
            )
        )
    return result


def _differs(installation: Installation, secret: str) -> bool:
    try:
        return installation.reveal_shared_secret() != secret
    except (SecretDecryptionError, LookupError):
        return True


def uninstall(client_key: str) -> Installation | None:
    """Mark the tenant uninstalled and erase its secret. Unknown tenant: ``None`` (a no-op)."""
    with transaction.atomic():
        installation = Installation.objects.select_for_update().filter(client_key=client_key).first()
        if installation is None:
            return None
        installation.state = Installation.State.UNINSTALLED
        installation.enabled = False
        installation.shared_secret = None
        installation.uninstalled_at = timezone.now()
        installation.last_event_type = "uninstalled"
        installation.save()
        transaction.on_commit(
            lambda: signals.tenant_uninstalled.send(sender=Installation, installation=installation)
        )
    return installation


def _set_enabled(client_key: str, enabled: bool) -> Installation:
    with transaction.atomic():
        installation = Installation.objects.select_for_update().filter(client_key=client_key).first()
        # Order independence: a late enabled/disabled never revives an uninstalled tenant.
        if installation is None or installation.state != Installation.State.INSTALLED:
            raise TenantNotInstalled(client_key)
        installation.enabled = enabled
        installation.last_event_type = "enabled" if enabled else "disabled"
        installation.save(update_fields=["enabled", "last_event_type", "updated_at"])
        signal = signals.tenant_enabled if enabled else signals.tenant_disabled
        transaction.on_commit(lambda: signal.send(sender=Installation, installation=installation))
    return installation


def enable(client_key: str) -> Installation:
    """Mark an installed tenant enabled; raises :class:`TenantNotInstalled` otherwise."""
    return _set_enabled(client_key, True)


def disable(client_key: str) -> Installation:
    """Mark an installed tenant disabled; raises :class:`TenantNotInstalled` otherwise."""
    return _set_enabled(client_key, False)
