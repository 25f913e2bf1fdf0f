"""What we keep about tenants: installations and the webhook deliveries they sent.

Their audit history lives in ``audit.models``."""

from __future__ import annotations

from django.db import connections, models
from django.utils import timezone

from tenants.fields import EncryptedSecretField, SealedSecret, get_secret_box
from tenants.rows import select_row

# Lifecycle body fields (SPEC 1.6) and the column each one is stored in. ``sharedSecret`` is
# stored encrypted; unknown fields land in ``extra``.
BODY_FIELDS: dict[str, str] = {
    "key": "app_key",
    "clientKey": "client_key",
    "baseUrl": "base_url",
    "displayUrl": "display_url",
    "displayUrlServicedeskHelpCenter": "display_url_servicedesk_help_center",
    "productType": "product_type",
    "description": "description",
    "serverVersion": "server_version",
    "pluginsVersion": "plugins_version",
    "serviceEntitlementNumber": "service_entitlement_number",
    "entitlementId": "entitlement_id",
    "entitlementNumber": "entitlement_number",
    "oauthClientId": "oauth_client_id",
    "installationId": "installation_id",
    "eventType": "last_event_type",
}
SECRET_FIELDS = frozenset({"sharedSecret", "shared_secret", "secret", "password", "token", "jwt"})


class InstallationManager(models.Manager["Installation"]):
    # What verifying a tenant-signed call needs; other columns load on first access.
    VERIFY_FIELDS = ("id", "client_key", "state", "suspended", "shared_secret")

    def for_verification(self, client_key: str) -> Installation | None:
        """The tenant with this exact ``client_key``, or None: one indexed query, hot path.

        Only ``VERIFY_FIELDS`` are loaded, through ``tenants.rows.select_row``: on every webhook,
        compiling an ORM query cost more than running it, and a ``RawQuerySet`` half as much again
        (``bench/webhook_ab.py``).
        """
        return select_row(connections[self.db], self.model, self.VERIFY_FIELDS, "client_key", client_key)


class Installation(models.Model):
    """One Jira Cloud site (tenant) that installed the app, keyed by its ``clientKey``."""

    class State(models.TextChoices):
        INSTALLED = "installed", "installed"
        UNINSTALLED = "uninstalled", "uninstalled"

    # Exact, case-sensitive comparison: PostgreSQL's deterministic collations and SQLite's
    # BINARY collation compare bytes; never key a tenant by baseUrl or by the app key.
    client_key = models.CharField(max_length=255, unique=True)
    app_key = models.CharField(max_length=255, blank=True)
    shared_secret = EncryptedSecretField(null=True, blank=True)
    base_url = models.TextField()
    display_url = models.TextField(blank=True)
    display_url_servicedesk_help_center = models.TextField(blank=True)
    product_type = models.CharField(max_length=64, blank=True)
    description = models.TextField(blank=True)
    server_version = models.CharField(max_length=255, blank=True)
    plugins_version = models.CharField(max_length=255, blank=True)
    service_entitlement_number = models.CharField(max_length=255, blank=True)
    entitlement_id = models.CharField(max_length=255, blank=True)
    entitlement_number = models.CharField(max_length=255, blank=True)
    oauth_client_id = models.CharField(max_length=255, blank=True)
    installation_id = models.CharField(max_length=255, blank=True, db_index=True)
    last_event_type = models.CharField(max_length=32, blank=True)
    # iat (seconds since the epoch) of the newest accepted installed/uninstalled token: an older
    # one resent later (a captured token, a very late retry) must not undo what came after it.
    lifecycle_token_iat = models.BigIntegerField(null=True, blank=True)
    extra = models.JSONField(default=dict, blank=True)

    state = models.CharField(max_length=16, choices=State.choices, default=State.INSTALLED)
    enabled = models.BooleanField(default=False)
    # App-level block set by operators: the tenant's webhooks and enabled/disabled get 403, while
    # Atlassian's signed installed/uninstalled are still honoured.
    suspended = models.BooleanField(default=False)
    suspended_at = models.DateTimeField(null=True, blank=True)
    notes = models.TextField(blank=True, help_text="Operators' notes; never sent to Jira.")
    installed_at = models.DateTimeField(default=timezone.now)
    uninstalled_at = models.DateTimeField(null=True, blank=True)
    secret_updated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = InstallationManager()

    class Meta:
        ordering = ["-installed_at"]
        indexes = [models.Index(fields=["state", "enabled"], name="installation_state_idx")]
        permissions = [("manage_installation", "Can suspend, resume and forget installations")]

    def __str__(self) -> str:
        return self.client_key

    def __repr__(self) -> str:
        return f"<Installation {self.client_key!r} {self.state} base_url={self.base_url!r}>"

    @property
    def is_installed(self) -> bool:
        return self.state == self.State.INSTALLED

    @property
    def has_secret(self) -> bool:
        return isinstance(self.shared_secret, SealedSecret | str)

    def reveal_shared_secret(self) -> str:
        """Decrypt the secret (fails closed with ``SecretDecryptionError``). Never log the result."""
        value = self.shared_secret
        if isinstance(value, str):  # assigned in this process and not saved yet
            return value
        if value is None:
            raise LookupError(f"tenant {self.client_key!r} has no shared secret")
        return get_secret_box().decrypt(value.ciphertext, self.client_key)


class DeliveryState(models.TextChoices):
    """Where a webhook delivery is in its processing (``WebhookDelivery.state``)."""

    PENDING = "pending", "pending"  # stored, its task queued (first time or a retry)
    PROCESSING = "processing", "processing"  # a worker is running the receivers
    DONE = "done", "done"  # every receiver returned
    FAILED = "failed", "failed"  # parked after the last attempt; admin's "retry now" resumes it
    DISCARDED = "discarded", "discarded"  # a failed one an operator gave up on: its body dropped


class ForgeInstallation(models.Model):
    """One Forge installation of the app (Forge remote calls: a FIT's ``app.installationId``).

    Linked to the Connect tenant (``tenant``) whose ``installed`` body carried the same
    ``installationId`` (Connect on Forge); without one it is a Forge-only installation. Forge
    gives a reinstalled app a new installation id: a FIT with a new id for the same site
    (``cloud_id``) and environment updates this row (the old ids in ``previous_installation_ids``),
    it never makes a second one. Forge sends no uninstall event; ``state`` changes only through
    Forge lifecycle events (``tenants.forge``), ordered by their FIT's ``iat``.
    """

    class State(models.TextChoices):
        INSTALLED = "installed", "installed"
        UNINSTALLED = "uninstalled", "uninstalled"

    # ari:cloud:ecosystem::installation/<uuid> (bare UUIDs of lifecycle bodies are normalised).
    installation_id = models.CharField(max_length=255, unique=True)
    cloud_id = models.CharField(max_length=64, blank=True)
    environment_id = models.CharField(max_length=255, blank=True)
    environment_type = models.CharField(max_length=32, blank=True)
    api_base_url = models.CharField(max_length=500, blank=True)
    site_url = models.CharField(max_length=500, blank=True)
    app_version = models.CharField(max_length=64, blank=True)
    tenant = models.ForeignKey(
        Installation,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="forge_installations",
        verbose_name="Connect tenant",
    )
    state = models.CharField(max_length=12, choices=State.choices, default=State.INSTALLED)
    # The FIT iat of the newest Forge lifecycle event applied (order-independence).
    lifecycle_iat = models.BigIntegerField(null=True, blank=True)
    # The iat of the newest FIT whose claims (apiBaseUrl, site, version...) this row holds: an
    # older FIT, arriving late, changes none of them.
    fit_iat = models.BigIntegerField(default=0)
    previous_installation_ids = models.JSONField(default=list, blank=True)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    uninstalled_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-last_seen_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["cloud_id", "environment_id"],
                condition=~models.Q(cloud_id=""),
                name="forge_installation_one_per_site_environment",
            )
        ]

    def __str__(self) -> str:
        return self.installation_id


class WebhookDeliveryManager(models.Manager["WebhookDelivery"]):
    def for_processing(self, pk: int) -> WebhookDelivery | None:
        """The delivery with its Connect tenant or Forge installation (every column of both), or
        None: what the task worker loads once per attempt. Two indexed queries
        (``tenants.rows.select_row``), a quarter of the CPU of ``select_related(...).get()``."""
        connection = connections[self.db]
        delivery = select_row(connection, self.model, _ALL[self.model], "id", pk)
        if delivery is None:
            return None
        if delivery.installation_id is None:
            forge = select_row(
                connection, ForgeInstallation, _ALL[ForgeInstallation], "id", delivery.forge_installation_id
            )
            if forge is None:  # pragma: no cover - the foreign key keeps the installation
                return None
            delivery.forge_installation = forge
            return delivery
        tenant = select_row(connection, Installation, _ALL[Installation], "id", delivery.installation_id)
        if tenant is None:  # pragma: no cover - the foreign key keeps the installation
            return None
        delivery.installation = tenant
        return delivery


class WebhookDelivery(models.Model):
    """One webhook Jira delivered, deduplicated by ``(installation, identifier)``; or one Forge
    event (``forge_installation`` set instead, ``identifier`` the digest of the event without its
    ``retryContext``: ``tenants.forge``)."""

    installation = models.ForeignKey(
        Installation, null=True, blank=True, on_delete=models.CASCADE, related_name="webhook_deliveries"
    )
    forge_installation = models.ForeignKey(
        ForgeInstallation,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="events",
        # Indexed by forge_event_dedupe alone (partial: Forge rows only), so that Jira's webhooks
        # do not maintain a second index of NULLs.
        db_index=False,
    )
    event = models.CharField(max_length=64)
    # X-Atlassian-Webhook-Identifier: stable across Jira's retries; "" when Jira sent none.
    identifier = models.CharField(max_length=255, blank=True)
    retry_count = models.PositiveIntegerField(default=0)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    body_size = models.PositiveIntegerField(default=0)
    # SHA-256 of the delivery's JWT and of its body: a retry of an identifier must carry the same
    # body, and a delivery without an identifier is bound to its token.
    token_digest = models.CharField(max_length=64, blank=True)
    body_digest = models.CharField(max_length=64, blank=True)
    # The body as received, encrypted with TENANT_SECRET_KEYS (bound to the tenant): kept until
    # the delivery has been processed, then dropped ("") unless TENANTS["STORE_WEBHOOK_BODIES"].
    body_sealed = models.TextField(blank=True, default="", editable=False)
    # Processing by the background task (tenants.tasks): pending -> processing -> done, or back
    # to pending for a retry, or failed after WEBHOOK_MAX_ATTEMPTS attempts (then retried again,
    # or discarded, by an operator).
    state = models.CharField(max_length=10, choices=DeliveryState.choices, default=DeliveryState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # The exception type of the last failed attempt (never its text: it may carry users' data).
    error_type = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)  # the last attempt's start
    next_attempt_at = models.DateTimeField(null=True, blank=True)  # a pending retry's time
    finished_at = models.DateTimeField(null=True, blank=True)  # done, or parked as failed

    objects = WebhookDeliveryManager()

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        permissions = [("retry_webhookdelivery", "Can retry a webhook delivery now")]
        indexes = [
            # The dashboard's backlog and failures, and prune's "processed only": few rows each.
            models.Index(fields=["state"], name="webhook_delivery_open", condition=~models.Q(state="done")),
            # A Forge retry's lookup of its first delivery (tenants.forge.record_event).
            models.Index(
                fields=["forge_installation", "identifier", "received_at"],
                name="forge_event_dedupe",
                condition=models.Q(forge_installation__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(installation__isnull=False, forge_installation__isnull=True)
                | models.Q(installation__isnull=True, forge_installation__isnull=False),
                name="webhook_delivery_one_sender",
            ),
            models.UniqueConstraint(
                fields=["installation", "identifier"],
                condition=~models.Q(identifier=""),
                name="webhook_delivery_unique_identifier",
            ),
            # Deliveries without an identifier are bound by their token. Jira's own deliveries carry
            # an identifier, and two of them to one URL in one second carry byte-identical tokens
            # (Connect tokens have no jti), so a token is not unique among those.
            models.UniqueConstraint(
                fields=["installation", "token_digest"],
                condition=models.Q(identifier="") & ~models.Q(token_digest=""),
                name="webhook_delivery_unique_token",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.identifier or '-'}"

    @property
    def sender(self) -> str:
        """Who sent it, for operators: the Connect clientKey, or the Forge installation id."""
        if self.installation is not None:
            return self.installation.client_key
        return self.forge_installation.installation_id if self.forge_installation is not None else ""


# Every concrete field (attnames) of the models loaded whole on hot paths.
_ALL: dict[type[models.Model], tuple[str, ...]] = {
    model: tuple(f.attname for f in model._meta.concrete_fields)
    for model in (Installation, WebhookDelivery, ForgeInstallation)
}
