"""The persistent cache of Atlassian's install-signing public keys."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from tenants.models import LifecycleEvent


class InstallKey(models.Model):
    """A public key fetched from a key server, by ``kid``; displayed only as its ``fingerprint``."""

    kid = models.CharField(max_length=256, unique=True)
    key_server = models.CharField(max_length=512)
    pem = models.TextField()
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the DER public key, hex")
    key_bits = models.PositiveIntegerField()
    fetched_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-fetched_at"]
        verbose_name = "install signing key"

    def __str__(self) -> str:
        return self.kid

    def __repr__(self) -> str:
        return f"<InstallKey {self.kid!r} from {self.key_server!r} sha256:{self.fingerprint[:16]}>"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()


# Rejected requests that were never Connect calls (bots, browsers, scanners): a wrong method on any
# route, or no token at all on a webhook route. Recorded like any rejection, counted apart from
# verification failures.
NOT_A_CONNECT_CALL = Q(reason="method_not_allowed") | Q(reason="missing_token", event_type="webhook")


class FailedVerification(LifecycleEvent):
    """The rejected requests of the audit history: a separate entry in admin for operators."""

    class Meta:
        proxy = True
        verbose_name = "failed verification"
        ordering = ["-created_at", "-id"]
