"""The persistent cache of Atlassian's install-signing public keys."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


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
