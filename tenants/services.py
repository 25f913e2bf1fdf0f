"""State changes of an installation. Each runs in one transaction with the tenant row locked.

These functions trust their caller: ``lifecycle`` verifies a request before it calls them.
Signals (``tenants.signals``) are sent only after the transaction commits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import LifecycleEvent
from tenants import signals
from tenants.crypto import SecretDecryptionError
from tenants.fields import SealedSecret, get_secret_box
from tenants.models import BODY_FIELDS, DeliveryState, Installation, WebhookDelivery
from tenants.rows import select_row
from tenants.tenant_cache import tenant_cache

logger = logging.getLogger(__name__)

# Body fields that are not columns of their own and are not kept in ``extra`` either.
_NOT_EXTRA = frozenset(BODY_FIELDS) | {"sharedSecret"}


class TenantNotInstalled(Exception):
    """The tenant does not exist or has uninstalled the app."""


class StaleLifecycleEvent(Exception):
    """An installed/uninstalled token older (``iat``) than the tenant's newest accepted one."""

    def __init__(self, client_key: str, token_iat: int, newest_iat: int) -> None:
        self.client_key, self.token_iat, self.newest_iat = client_key, token_iat, newest_iat
        super().__init__(client_key)


def _check_and_note_iat(installation: Installation, token_iat: int | None) -> bool:
    """Refuse a token older than the newest accepted one; note a newer one. True if it changed."""
    if token_iat is None:
        return False
    newest = installation.lifecycle_token_iat
    if newest is not None and token_iat < newest:
        raise StaleLifecycleEvent(installation.client_key, token_iat, newest)
    if newest is None or token_iat > newest:
        installation.lifecycle_token_iat = token_iat
        return True
    return False


@dataclass(frozen=True)
class InstallResult:
    installation: Installation
    created: bool
    previous_base_url: str | None
    secret_changed: bool


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def install_detail(result: InstallResult) -> str:
    """The audit trail's one-line account of an accepted install."""
    if result.created:
        return "New tenant installed."
    if result.previous_base_url is not None:
        old, new = result.previous_base_url[:200], result.installation.base_url[:200]
        return f"Site renamed: baseUrl {old!r} -> {new!r}."
    return "Reinstalled or updated." + (" Shared secret replaced." if result.secret_changed else "")


def install(body: Mapping[str, Any], token_iat: int | None = None) -> InstallResult:
    """Create or update the tenant of a verified ``installed`` body; the new secret replaces the old.

    ``token_iat``: the verified token's ``iat`` (seconds). An existing tenant whose newest accepted
    installed/uninstalled token is newer raises :class:`StaleLifecycleEvent` and nothing changes;
    called inside a transaction (the ``installed`` view's), that transaction must then roll back
    (no savepoint is taken: two round trips on every install).

    Safe under concurrency: the row is locked (``SELECT ... FOR UPDATE``); when two first
    installs race, the loser's insert fails on the unique ``client_key`` and it updates the
    winner's row instead (see ``_locked_or_created``).
    """
    client_key = str(body["clientKey"])
    secret = str(body["sharedSecret"])
    now = timezone.now()
    # No savepoint inside the caller's transaction (two round trips): a StaleLifecycleEvent
    # raised here leaves that transaction to roll back whole, as the installed view does.
    with transaction.atomic(savepoint=False):
        installation, created = _locked_or_created(
            client_key,
            # Every column in the INSERT: a first install is one write, not an INSERT and an UPDATE.
            {
                **{
                    column: _text(body.get(name))
                    for name, column in BODY_FIELDS.items()
                    if name != "clientKey"
                },
                "extra": {k: v for k, v in body.items() if k not in _NOT_EXTRA},
                "shared_secret": secret,
                "installed_at": now,
                "secret_updated_at": now,
                "lifecycle_token_iat": token_iat,
            },
        )
        previous_base_url = None
        secret_changed = created
        changed: set[str] = set()

        def assign(column: str, value: Any) -> None:
            if getattr(installation, column) != value:
                setattr(installation, column, value)
                changed.add(column)

        if not created:
            if _check_and_note_iat(installation, token_iat):
                changed.add("lifecycle_token_iat")
            if installation.base_url != _text(body.get("baseUrl")):
                previous_base_url = installation.base_url
            secret_changed = not installation.has_secret or _differs(installation, secret)
            if installation.state != Installation.State.INSTALLED:
                assign("installed_at", now)
                assign("uninstalled_at", None)
            assign("state", Installation.State.INSTALLED)
            if secret_changed:
                installation.shared_secret = secret
                changed.add("shared_secret")
                assign("secret_updated_at", now)
        for name, column in BODY_FIELDS.items():
            if name != "clientKey":
                assign(column, _text(body.get(name)))
        assign("extra", {k: v for k, v in body.items() if k not in _NOT_EXTRA})
        if changed:  # a repeated install (Jira's retry) writes nothing but its audit row
            installation.save(update_fields=[*sorted(changed), "updated_at"])
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


def _locked_or_created(client_key: str, defaults: dict[str, Any]) -> tuple[Installation, bool]:
    """The tenant's row, locked (``SELECT ... FOR UPDATE``), or a new one made of ``defaults``.

    ``get_or_create`` with ``select_for_update``, without compiling the query on every call
    (a reinstall, or Jira's retry of one, is the common case): through ``tenants.rows``. When two
    first installs race, the loser's insert fails on the unique ``client_key`` (in a savepoint)
    and it locks and returns the winner's row.
    """
    connection = transaction.get_connection()
    names = _ALL_INSTALLATION_FIELDS
    found = select_row(connection, Installation, names, "client_key", client_key, for_update=True)
    if found is not None:
        return found, False
    try:
        with transaction.atomic():
            return Installation.objects.create(client_key=client_key, **defaults), True
    except IntegrityError:
        found = select_row(connection, Installation, names, "client_key", client_key, for_update=True)
        if found is None:  # pragma: no cover - the winner's row was deleted meanwhile
            raise
        return found, False


_ALL_INSTALLATION_FIELDS = tuple(f.attname for f in Installation._meta.concrete_fields)


def _differs(installation: Installation, secret: str) -> bool:
    try:
        return installation.reveal_shared_secret() != secret
    except (SecretDecryptionError, LookupError):
        return True


def uninstall(client_key: str, token_iat: int | None = None) -> Installation | None:
    """Mark the tenant uninstalled and erase its secret. Unknown tenant: ``None`` (a no-op).

    ``token_iat`` as for :func:`install`: an uninstall older than the newest accepted
    installed/uninstalled raises :class:`StaleLifecycleEvent`.
    """
    with transaction.atomic():
        installation = Installation.objects.select_for_update().filter(client_key=client_key).first()
        if installation is None:
            return None
        _check_and_note_iat(installation, token_iat)
        installation.state = Installation.State.UNINSTALLED
        installation.enabled = False
        installation.shared_secret = None
        installation.uninstalled_at = timezone.now()
        installation.last_event_type = "uninstalled"
        installation.save()
        # This process forgets the tenant's secret at once; other workers' entries expire, and
        # none is used meanwhile (the delivery INSERT checks the row: tenants/tenant_cache.py).
        transaction.on_commit(lambda: tenant_cache.drop(client_key))
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


@dataclass(frozen=True)
class PruneResult:
    events: int
    deliveries: int


def prune_history(
    *,
    events_older_than: timedelta,
    deliveries_older_than: timedelta,
    dry_run: bool = False,
    batch_size: int = 5000,
    progress: Callable[[str, int], None] | None = None,
) -> PruneResult:
    """Delete audit rows and processed (``done``, or ``discarded`` by an operator) webhook
    deliveries older than the given ages, in batches; pending, processing and failed deliveries
    are never pruned.

    Batches keep each transaction short on a busy database; ``progress`` is called after each
    batch with the model name and the running count. ``dry_run`` only counts.
    """
    now = timezone.now()
    counts = []
    for name, queryset in (
        ("lifecycle events", LifecycleEvent.objects.filter(created_at__lt=now - events_older_than)),
        (
            "webhook deliveries",
            # Processed (or discarded) ones only: a pending or failed delivery still holds work.
            WebhookDelivery.objects.filter(
                received_at__lt=now - deliveries_older_than,
                state__in=(DeliveryState.DONE, DeliveryState.DISCARDED),
            ),
        ),
    ):
        if dry_run:
            counts.append(queryset.count())
            continue
        deleted = 0
        while True:
            ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            with transaction.atomic():
                deleted += queryset.model.objects.filter(pk__in=ids).delete()[0]
            if progress is not None:
                progress(name, deleted)
        counts.append(deleted)
    return PruneResult(events=counts[0], deliveries=counts[1])


# --- Operators' actions (Django admin); each is recorded in the tenant's history --------------


def record_admin_action(installation: Installation | str, action: str, actor: str, detail: str) -> None:
    """The tenant's history row for an operator's action (``admin_<action>``, with the actor);
    written in the caller's transaction, so it commits with the change. ``installation``: the
    Connect tenant, or the key its history is filed under (a Forge installation's id)."""
    LifecycleEvent.objects.record(
        event_type=f"admin_{action}",
        outcome=LifecycleEvent.Outcome.ACCEPTED,
        client_key=installation if isinstance(installation, str) else installation.client_key,
        actor=actor,
        detail=detail,
        verified=True,  # an authenticated operator acted on this tenant (committed with the change)
    )


def set_suspended(client_key: str, suspended: bool, *, actor: str) -> bool:
    """Suspend or resume a tenant; returns whether anything changed. Recorded with the operator."""
    with transaction.atomic():
        installation = Installation.objects.select_for_update().get(client_key=client_key)
        if installation.suspended == suspended:
            return False
        installation.suspended = suspended
        installation.suspended_at = timezone.now() if suspended else None
        installation.save(update_fields=["suspended", "suspended_at", "updated_at"])
    action = "suspend" if suspended else "resume"
    verb = "suspended" if suspended else "resumed"
    record_admin_action(installation, action, actor, f"Tenant {verb} by {actor}.")
    return True


def update_notes(installation: Installation, notes: str, *, actor: str) -> None:
    """Save operators' notes on a tenant; recorded with the operator (not the text)."""
    Installation.objects.filter(pk=installation.pk).update(notes=notes, updated_at=timezone.now())
    installation.notes = notes
    record_admin_action(installation, "notes", actor, f"Notes edited by {actor} ({len(notes)} characters).")


def forget(client_keys: list[str], *, actor: str) -> int:
    """Delete uninstalled tenants (row, secret, deliveries); their audit history stays.

    Installed tenants are never deleted here; returns how many were forgotten.
    """
    forgotten = 0
    for client_key in client_keys:
        with transaction.atomic():
            installation = (
                Installation.objects.select_for_update()
                .filter(client_key=client_key, state=Installation.State.UNINSTALLED)
                .first()
            )
            if installation is None:
                continue
            installation.delete()
        forgotten += 1
        record_admin_action(installation, "forget", actor, f"Uninstalled tenant forgotten by {actor}.")
    return forgotten


# --- Secret-key rotation (manage.py rotate_tenant_secrets) -------------------------------------


@dataclass
class RotationReport:
    with_secret: int = 0
    rotated: int = 0
    already_current: int = 0
    failed: list[str] = field(default_factory=list)
    verified: int = 0
    unverifiable: list[str] = field(default_factory=list)
    # Webhook bodies stored encrypted (pending, failed, or kept with STORE_WEBHOOK_BODIES).
    bodies: int = 0
    bodies_rotated: int = 0
    bodies_failed: list[int] = field(default_factory=list)  # delivery ids


def rotate_secrets(
    *, batch_size: int = 500, dry_run: bool = False, progress: Callable[[int, int], None] | None = None
) -> RotationReport:
    """Re-encrypt every stored secret under the first of TENANT_SECRET_KEYS, then verify all decrypt.

    Rows are locked batch by batch (``SELECT ... FOR UPDATE``), so a reinstall that lands at the
    same time either commits first (and its fresh ciphertext is rotated) or waits for the batch.
    A row no configured key decrypts is reported, never overwritten.
    """
    box = get_secret_box()
    report = RotationReport()
    pks = list(
        Installation.objects.filter(shared_secret__isnull=False).order_by("pk").values_list("pk", flat=True)
    )
    report.with_secret = len(pks)
    for start in range(0, len(pks), batch_size):
        with transaction.atomic():
            rows = Installation.objects.select_for_update().filter(
                pk__in=pks[start : start + batch_size], shared_secret__isnull=False
            )
            for row in rows:
                ciphertext = row.shared_secret.ciphertext
                if box.is_current(ciphertext):
                    report.already_current += 1
                    continue
                try:
                    rotated = box.rotate(ciphertext)
                    box.decrypt(rotated, row.client_key)
                except SecretDecryptionError:
                    report.failed.append(row.client_key)
                    continue
                if not dry_run:
                    Installation.objects.filter(pk=row.pk).update(shared_secret=SealedSecret(rotated))
                report.rotated += 1
        if progress is not None:
            progress(min(start + batch_size, len(pks)), len(pks))
    for row in Installation.objects.filter(shared_secret__isnull=False).iterator(chunk_size=batch_size):
        try:
            row.reveal_shared_secret()
        except SecretDecryptionError:
            report.unverifiable.append(row.client_key)
        else:
            report.verified += 1
    _rotate_delivery_bodies(box, report, batch_size=batch_size, dry_run=dry_run)
    return report


def _rotate_delivery_bodies(box: Any, report: RotationReport, *, batch_size: int, dry_run: bool) -> None:
    """The same for webhook bodies stored encrypted: re-encrypted under the first key (their
    tenant binding kept), batch by batch with the rows locked, then each checked to decrypt."""
    from tenants import deliveries

    pks = list(WebhookDelivery.objects.exclude(body_sealed="").order_by("pk").values_list("pk", flat=True))
    report.bodies = len(pks)
    for start in range(0, len(pks), batch_size):
        with transaction.atomic():
            rows = (
                WebhookDelivery.objects.select_for_update(of=("self",))  # the tenant is an outer join
                .select_related("installation")
                .filter(pk__in=pks[start : start + batch_size])
                .exclude(body_sealed="")
            )
            for row in rows:
                stored = row.body_sealed
                try:
                    row.body_sealed = stored if box.is_current(stored) else box.rotate(stored)
                    deliveries.open_body(row)  # decrypts with its tenant's binding, or raises
                except (SecretDecryptionError, ValueError):
                    report.bodies_failed.append(row.pk)
                    continue
                if row.body_sealed != stored:
                    if not dry_run:
                        WebhookDelivery.objects.filter(pk=row.pk).update(body_sealed=row.body_sealed)
                    report.bodies_rotated += 1
