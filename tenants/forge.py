"""Forge installations and Forge events: the services behind Forge remote calls.

Called by ``lifecycle`` once a Forge Invocation Token (FIT) has verified, with what it names;
nothing here reads a request or a token. Writes no audit rows: each function returns what
happened, and the verification middleware records it.

Facts (Atlassian: "Forge remote essentials", "Sending product events to a remote", the
lifecycle events reference, https://developer.atlassian.com/platform/forge/): events reach a remote
as a POST with a 5 s timeout; after a timeout, a non-2xx answer (3xx and 401 included) Forge
retries up to 4 times, 60 s apart, marking each retry with ``retryContext`` (``retryCount``,
``retryReason``; documented under ``payload``, read here at the top level too). Events carry no
delivery id. Lifecycle events ``avi:forge:installed:app`` and ``avi:forge:upgraded:app`` name the
installation by a bare UUID where FITs use ARIs; Forge sends no uninstall event.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from tenants.deliveries import DeliveryResult, enqueue_new_delivery, seal_forge_body
from tenants.models import ForgeInstallation, Installation, WebhookDelivery

INSTALLATION_ARI = "ari:cloud:ecosystem::installation/"
INSTALLED_EVENTS = frozenset({"avi:forge:installed:app", "avi:forge:upgraded:app"})
UNINSTALLED_EVENTS = frozenset({"avi:forge:uninstalled:app"})  # not sent by Forge today; handled if it is
LIFECYCLE_EVENTS = INSTALLED_EVENTS | UNINSTALLED_EVENTS
SEEN_EVERY = timedelta(minutes=5)  # last_seen_at is written at most this often


@dataclass(frozen=True)
class FitSubject:
    """What a verified FIT says about its installation (strings; "" when absent); each field is a
    ``ForgeInstallation`` column of the same name."""

    installation_id: str  # an ARI
    cloud_id: str = ""
    environment_id: str = ""
    environment_type: str = ""
    api_base_url: str = ""
    site_url: str = ""
    app_version: str = ""
    fit_iat: int = 0  # the FIT's iat


@dataclass(frozen=True)
class Observed:
    """The Forge installation of a verified FIT and what knowing it changed.

    ``change``: ``""`` (known, nothing to tell), ``"created"`` (first seen), ``"reinstalled"``
    (a new installation id for a known site and environment; ``previous_id`` the old one),
    ``"linked"`` (now linked to the Connect tenant with this installation id).
    ``superseded``: the FIT names an id the record has replaced (a reinstall): a late call of the
    old installation, which must not change the new one's state.
    """

    installation: ForgeInstallation
    change: str = ""
    previous_id: str = ""
    superseded: bool = False  # a FIT of an installation id this record has since replaced

    def detail(self) -> str:
        """One line for the audit trail ("" when nothing changed)."""
        row = self.installation
        tenant = f" linked to Connect tenant {row.tenant.client_key!r}" if row.tenant else " (Forge only)"
        if self.change == "created":
            return f"Forge installation {row.installation_id} first seen{tenant}."
        if self.change == "reinstalled":
            return (
                f"Forge installation id changed from {self.previous_id} to {row.installation_id} for site "
                f"{row.cloud_id} (reinstalled): same record{tenant}."
            )
        if self.change == "linked":
            return f"Forge installation {row.installation_id}{tenant}."
        return ""


def _connect_tenant(installation_id: str) -> Installation | None:
    """The installed Connect tenant whose install body carried this installation id: as an ARI or
    a bare UUID, in lower or upper case (exact matches: the column's index serves them)."""
    bare = installation_id.removeprefix(INSTALLATION_ARI)
    forms = {installation_id, bare, INSTALLATION_ARI + bare.upper(), bare.upper()}
    return (
        Installation.objects.filter(installation_id__in=sorted(forms), state=Installation.State.INSTALLED)
        .order_by("-installed_at")
        .first()
    )


def observe(subject: FitSubject) -> Observed:
    """The :class:`ForgeInstallation` a verified FIT names, created, relinked or refreshed.

    By installation id; else, for a known site (``cloud_id``) and environment, the same record
    with the new id (a reinstall); else a new record, linked to the Connect tenant whose
    ``installed`` body carried that id when there is one. Safe under concurrency (a unique
    installation id and a unique site and environment; a lost race reads the winner's row).
    """
    now = timezone.now()
    row = ForgeInstallation.objects.filter(installation_id=subject.installation_id).first()
    if row is not None:
        return _refresh(row, subject, now)
    try:
        with transaction.atomic():
            if subject.cloud_id:
                known = (
                    ForgeInstallation.objects.select_for_update()
                    .filter(cloud_id=subject.cloud_id, environment_id=subject.environment_id)
                    .first()
                )
                if known is not None and subject.installation_id == known.installation_id:
                    return Observed(known)  # a concurrent call moved it to this id already
                if known is not None and subject.installation_id in known.previous_installation_ids:
                    # A late FIT of the installation this one replaced (Forge retries for minutes).
                    return Observed(known, superseded=True)
                if known is not None:
                    previous = known.installation_id
                    known.previous_installation_ids = [*known.previous_installation_ids, previous][-20:]
                    known.installation_id = subject.installation_id
                    known.tenant = _connect_tenant(subject.installation_id) or known.tenant
                    _assign(known, subject, now)
                    known.save()
                    return Observed(known, "reinstalled", previous)
            row = ForgeInstallation.objects.create(
                **asdict(subject),  # its fields are the row's columns
                tenant=_connect_tenant(subject.installation_id),
                first_seen_at=now,
                last_seen_at=now,
            )
            return Observed(row, "created")
    except IntegrityError:  # a concurrent call stored it first
        row = ForgeInstallation.objects.filter(installation_id=subject.installation_id).first()
        if row is None:
            raise
        return Observed(row)


def _assign(row: ForgeInstallation, subject: FitSubject, now: Any) -> None:
    row.last_seen_at = now
    if subject.fit_iat < row.fit_iat:
        return  # an older FIT, arriving late: what it says is not newer
    row.fit_iat = subject.fit_iat
    row.api_base_url = subject.api_base_url or row.api_base_url
    row.site_url = subject.site_url or row.site_url
    row.app_version = subject.app_version or row.app_version
    row.environment_type = subject.environment_type or row.environment_type
    row.cloud_id = row.cloud_id or subject.cloud_id


def _refresh(row: ForgeInstallation, subject: FitSubject, now: Any) -> Observed:
    """A known installation: write only what changed (and last_seen_at every few minutes)."""
    change = ""
    if row.tenant_id is None:
        tenant = _connect_tenant(row.installation_id)
        if tenant is not None:
            row.tenant = tenant
            change = "linked"
    before = (row.api_base_url, row.site_url, row.app_version, row.environment_type, row.cloud_id)
    seen = row.last_seen_at
    _assign(row, subject, now)
    after = (row.api_base_url, row.site_url, row.app_version, row.environment_type, row.cloud_id)
    if change or before != after or now - seen > SEEN_EVERY:
        try:
            with transaction.atomic():
                # Unless a newer FIT's claims were stored meanwhile (by another worker).
                ForgeInstallation.objects.filter(pk=row.pk, fit_iat__lte=row.fit_iat).update(
                    tenant_id=row.tenant_id,
                    api_base_url=row.api_base_url,
                    site_url=row.site_url,
                    app_version=row.app_version,
                    environment_type=row.environment_type,
                    cloud_id=row.cloud_id,
                    fit_iat=row.fit_iat,
                    last_seen_at=now,
                    updated_at=now,
                )
        except IntegrityError:  # the cloud id is another record's: keep this one's as it was
            row.cloud_id = before[4]
    return Observed(row, change)


# --- Forge lifecycle events -----------------------------------------------------------------


@dataclass(frozen=True)
class LifecycleApplied:
    """``applied`` (the state changed or was confirmed), else ``reason`` and ``detail`` say why not."""

    applied: bool
    reason: str = ""
    detail: str = ""


def apply_lifecycle(installation: ForgeInstallation, event: str, token_iat: int) -> LifecycleApplied:
    """Apply a verified Forge lifecycle event to its installation, in order of the FITs' ``iat``.

    ``avi:forge:installed:app`` / ``avi:forge:upgraded:app``: installed (the app version comes
    from the FITs, ``observe``);
    ``avi:forge:uninstalled:app``: uninstalled, idempotently. An event whose FIT is older than the
    newest applied one changes nothing (``stale_lifecycle_token``), as for Connect.
    """
    with transaction.atomic():
        row = ForgeInstallation.objects.select_for_update().get(pk=installation.pk)
        if row.lifecycle_iat is not None and token_iat < row.lifecycle_iat:
            return LifecycleApplied(
                False,
                "stale_lifecycle_token",
                f"{event} with a FIT issued at {token_iat}, before the newest applied ({row.lifecycle_iat}): "
                "nothing changed.",
            )
        uninstall = event in UNINSTALLED_EVENTS
        if uninstall and row.state == ForgeInstallation.State.UNINSTALLED:
            row.lifecycle_iat = max(token_iat, row.lifecycle_iat or 0)
            row.save(update_fields=["lifecycle_iat", "updated_at"])
            return LifecycleApplied(False, "", f"{event}: already uninstalled, nothing changed.")
        row.lifecycle_iat = token_iat
        if uninstall:
            row.state = ForgeInstallation.State.UNINSTALLED
            row.uninstalled_at = timezone.now()
        else:
            row.state = ForgeInstallation.State.INSTALLED
            row.uninstalled_at = None
        row.save()
    installation.state, installation.lifecycle_iat = row.state, row.lifecycle_iat
    return LifecycleApplied(
        True, "", f"{event} applied: Forge installation {row.installation_id} {row.state}."
    )


# --- Forge events, at least once ------------------------------------------------------------


def event_payload(body: dict[str, Any]) -> dict[str, Any]:
    """The event inside a remote call's body: ``payload`` when it is an object, else the body."""
    payload = body.get("payload")
    return payload if isinstance(payload, dict) else body


def retry_context(body: dict[str, Any]) -> dict[str, Any] | None:
    """The ``retryContext`` of a retried event (top level or under ``payload``), else None."""
    for holder in (body, event_payload(body)):
        value = holder.get("retryContext")
        if isinstance(value, dict):
            return value
    return None


def dedupe_key(body: dict[str, Any]) -> str:
    """SHA-256 hex of the event with ``retryContext`` removed (at the top level and under
    ``payload``), serialised canonically: equal for an event and each of its retries."""
    stripped = {k: v for k, v in body.items() if k != "retryContext"}
    if isinstance(stripped.get("payload"), dict):
        stripped["payload"] = {k: v for k, v in stripped["payload"].items() if k != "retryContext"}
    canonical = json.dumps(stripped, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def record_event(
    installation: ForgeInstallation,
    *,
    event: str,
    body: dict[str, Any],
    raw_body: str,
    window: int,
    token_digest: str = "",
) -> DeliveryResult:
    """Store a verified Forge event once, with its processing task (``tenants.deliveries``).

    Deduplication: a retry (it carries ``retryContext``) of an event whose :func:`dedupe_key` was
    stored for this installation at most ``window`` seconds before returns that delivery with
    ``created=False`` and queues nothing. An event without ``retryContext`` is a first attempt
    and always stored: Forge marks every redelivery, and two firings of one scheduled trigger
    can carry identical bodies, unless it is the very same request again (the same FIT,
    ``token_digest``, SHA-256 hex, and body). The trade-off: a retry whose first attempt never
    reached this server, while an identical event did within the window, is taken for a
    duplicate of it. Serialised per installation (its row is locked), so two never both store.
    Database errors and ``EnqueueFailed`` propagate (5xx: Forge retries).
    """
    key = dedupe_key(body)
    retry = retry_context(body)
    count = retry.get("retryCount") if retry else 0
    delivery = WebhookDelivery(
        forge_installation=installation,
        event=event[:64],
        identifier=key,
        retry_count=count if isinstance(count, int) and 0 <= count < 1000 else (1 if retry else 0),
        body_size=len(raw_body.encode("utf-8", "surrogatepass")),
        body_sealed=seal_forge_body(installation.pk, raw_body),
        body_digest=hashlib.sha256(raw_body.encode("utf-8", "surrogatepass")).hexdigest(),
        token_digest=token_digest,
    )
    with transaction.atomic():
        # Serialised per installation, so that two copies of one event never both store.
        ForgeInstallation.objects.select_for_update().filter(pk=installation.pk).values_list("pk").first()
        same = WebhookDelivery.objects.filter(forge_installation=installation, identifier=key)
        if retry is not None:
            same = same.filter(received_at__gte=timezone.now() - timedelta(seconds=window))
        else:
            same = same.filter(token_digest=token_digest) if token_digest else same.none()
        earlier = same.order_by("-received_at").first()
        if earlier is not None:
            return DeliveryResult(earlier, created=False)
        delivery.save(force_insert=True)
        enqueue_new_delivery(delivery.pk)
    return DeliveryResult(delivery, created=True)
