"""Each worker process's memory of verified tenants, for the webhook hot path.

A webhook's verification needs its tenant's row and the decrypted ``sharedSecret``: a query (one
round trip) and a Fernet decryption on every request. This cache keeps, per process, the
``Installation`` snapshot (``InstallationManager.VERIFY_FIELDS``) and the secret of tenants
whose webhooks verified, keyed by ``clientKey``, least recently used first out, at most
``TENANT_VERIFY_CACHE_SIZE`` entries (0 turns it off), each for at most ``MAX_AGE`` seconds.

It is never trusted alone. The delivery's ``INSERT`` runs only if the tenant's row still holds
the snapshot's state, suspension and sealed secret (``tenants.deliveries.record_webhook``), in
the same statement. An uninstall, a reinstall with a new secret, a suspension, or a key rotation
made by any process makes that statement insert nothing: the entry is dropped and the request
verified again from the database (``lifecycle.middleware``). So every worker honours the change
on its next request, and the cache needs no cross-process invalidation.

The secrets stay in the worker's memory for at most ``MAX_AGE`` seconds after their last
verification (never logged or shown: the entries' ``repr`` leaves them out; a process's memory is
as trusted as its environment, which holds ``TENANT_SECRET_KEYS``). An uninstall drops the entry
of the process that handles it; the others' expire.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cachetools import TLRUCache

from tenants.conf import tenant_settings

if TYPE_CHECKING:
    from tenants.models import Installation


@dataclass(frozen=True)
class VerifiedTenant:
    """A tenant's row as verification read it (``VERIFY_FIELDS`` only), and its secret."""

    installation: Installation = field(repr=False)
    shared_secret: str = field(repr=False)


# Seconds an entry lives after it was stored (a tenant still sending webhooks is stored again).
MAX_AGE = 600


class TenantCache:
    """A thread-safe LRU of :class:`VerifiedTenant` by ``clientKey``, sized by
    ``TENANT_VERIFY_CACHE_SIZE`` when first used after a settings change; each entry lives
    ``MAX_AGE`` seconds of ``timer`` (``time.monotonic``)."""

    def __init__(self, timer: Callable[[], float] = time.monotonic) -> None:
        self._timer = timer  # seconds, for the entries' age
        self._lock = threading.Lock()
        self._entries: TLRUCache[str, VerifiedTenant] | None = None
        self._size = -1

    def _cache(self) -> TLRUCache[str, VerifiedTenant] | None:
        size = tenant_settings.VERIFY_CACHE_SIZE
        if size != self._size:
            self._entries = (
                TLRUCache(maxsize=size, ttu=lambda _key, _value, now: now + MAX_AGE, timer=self._timer)
                if size
                else None
            )
            self._size = size
        return self._entries

    def get(self, client_key: str) -> VerifiedTenant | None:
        """The remembered tenant, or None (unknown, evicted, or the cache is off)."""
        with self._lock:
            entries = self._cache()
            return None if entries is None else entries.get(client_key)

    def put(self, client_key: str, tenant: VerifiedTenant) -> None:
        """Remember ``tenant`` (an installed, unsuspended tenant whose token just verified)."""
        with self._lock:
            entries = self._cache()
            if entries is not None:
                entries[client_key] = tenant

    def drop(self, client_key: str) -> None:
        """Forget ``client_key``'s entry (its row changed)."""
        with self._lock:
            entries = self._cache()
            if entries is not None:
                entries.pop(client_key, None)

    def clear(self) -> None:
        """Forget every entry (tests; a process that must reread every tenant)."""
        with self._lock:
            if self._entries is not None:
                self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return 0 if self._entries is None else len(self._entries)


tenant_cache = TenantCache()
