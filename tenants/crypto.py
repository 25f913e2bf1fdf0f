"""Encryption of tenants' shared secrets at rest. Pure: no Django import.

Fernet (AES-128-CBC + HMAC-SHA256) through MultiFernet: the first key encrypts, every key
decrypts, and :meth:`SecretBox.rotate` re-encrypts under the first key. Fernet has no
associated data, so the plaintext is framed with a digest of the tenant's ``client_key``;
a ciphertext copied into another tenant's row is therefore refused. Every failure raises
:class:`SecretDecryptionError`; the stored bytes are never returned as if they were a secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

_FRAME_VERSION = b"ck1:"
_DIGEST_BYTES = 32


class SecretKeyError(ValueError):
    """A configured encryption key is missing or malformed."""


class SecretDecryptionError(Exception):
    """A stored secret cannot be decrypted for this tenant: fail closed."""


def _client_digest(client_key: str) -> bytes:
    return hashlib.sha256(client_key.encode("utf-8")).digest()


def parse_keys(keys: Sequence[str]) -> list[Fernet]:
    """Turn configured key strings into Fernet objects, naming the position of a bad one."""
    if not keys:
        raise SecretKeyError("no encryption key is configured (TENANT_SECRET_KEYS is empty)")
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.strip().encode("ascii")))
        except (ValueError, TypeError, UnicodeEncodeError, AttributeError) as exc:
            raise SecretKeyError(
                f"TENANT_SECRET_KEYS entry {position} is not a Fernet key "
                "(32 random bytes, url-safe base64, 44 characters)"
            ) from exc
    return fernets


def derive_development_key(secret_key: str) -> str:
    """A deterministic Fernet key derived from Django's SECRET_KEY: for DEBUG only."""
    digest = hashlib.sha256(b"tenants.crypto development key\x00" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")


class SecretBox:
    """Encrypts and decrypts secrets bound to a ``client_key``."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._fernets = parse_keys(keys)
        self._primary = self._fernets[0]
        self._multi = MultiFernet(self._fernets)

    def encrypt(self, plaintext: str, client_key: str) -> str:
        """Encrypt ``plaintext`` under the first key, bound to ``client_key``."""
        if not isinstance(plaintext, str) or not isinstance(client_key, str):
            raise TypeError("plaintext and client_key must be str")
        framed = _FRAME_VERSION + _client_digest(client_key) + plaintext.encode("utf-8")
        return self._multi.encrypt(framed).decode("ascii")

    def decrypt(self, ciphertext: str, client_key: str) -> str:
        """Return the plaintext, or raise :class:`SecretDecryptionError`."""
        try:
            framed = self._multi.decrypt(ciphertext.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError, AttributeError, TypeError) as exc:
            raise SecretDecryptionError(
                "the stored secret does not decrypt with any key in TENANT_SECRET_KEYS"
            ) from exc
        head = len(_FRAME_VERSION)
        if not framed.startswith(_FRAME_VERSION) or len(framed) < head + _DIGEST_BYTES:
            raise SecretDecryptionError("the stored secret has an unknown format")
        digest = framed[head : head + _DIGEST_BYTES]
        if not hmac.compare_digest(digest, _client_digest(client_key)):
            raise SecretDecryptionError("the stored secret belongs to another tenant")
        try:
            return framed[head + _DIGEST_BYTES :].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SecretDecryptionError("the stored secret is not valid UTF-8") from exc

    def rotate(self, ciphertext: str) -> str:
        """Re-encrypt under the first key; the tenant binding is kept unchanged."""
        try:
            return self._multi.rotate(ciphertext.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeEncodeError, AttributeError, TypeError) as exc:
            raise SecretDecryptionError(
                "the stored secret does not decrypt with any key in TENANT_SECRET_KEYS"
            ) from exc

    def is_current(self, ciphertext: str) -> bool:
        """True when the first (current) key decrypts this ciphertext."""
        try:
            self._primary.decrypt(ciphertext.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            return False
        return True
