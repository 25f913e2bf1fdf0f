"""Atlassian's install-signing public keys, by ``kid``: memory, then the database, then key servers.

Fetching follows SPEC 3 step 4: ``<server>/<kid>`` for each configured server in order (no
urljoin), no redirects, connect/read timeouts, a wall-clock deadline enforced by a watchdog that
shuts the socket down (so a slow-drip server is cut off in the middle of a header or a body),
a 16 KB cap, status 200 and an RSA public key of at least 2048 bits, else the next server.
A 404 from every server means ``unknown_kid``; anything else ``key_server_unavailable``.

Good keys are cached in :class:`~lifecycle.models.InstallKey` (shared by every process) and in a
small per-process LRU; 404s are cached briefly in the Django cache (shared). Concurrent requests
for one new kid cause one fetch per process. When every server fails, a key past its TTL is
still used for a bounded time (stale-if-error).
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from lifecycle.conf import connect_settings
from lifecycle.errors import KeyServerUnavailable, UnknownKid
from lifecycle.models import InstallKey
from lifecycle.protocol import validate_kid

logger = logging.getLogger(__name__)

MAX_KEY_BYTES = 16 * 1024
MIN_RSA_BITS = 2048
MEMORY_SIZE = 256
LOCK_STRIPES = 256
MAX_CONCURRENT_FETCHES = 4
MEMORY_TTL = 300.0  # seconds a process trusts its own copy before it reads the database again
USER_AGENT = "django-connect-app key fetcher (+https://developer.atlassian.com/cloud/jira/platform/)"


# --- Fetching -------------------------------------------------------------------------------


class _Watchdog:
    """Shuts down every socket opened under it once ``seconds`` have passed."""

    def __init__(self, seconds: float) -> None:
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.fired = False
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            fired = self.fired
        if fired:
            _shutdown(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def __enter__(self) -> _Watchdog:
        _current.dog = self
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        _current.dog = None


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


_current = threading.local()


class _WatchedMixin:
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        dog = getattr(_current, "dog", None)
        if dog is not None:
            dog.watch(sock)
        return sock


class _WatchedHTTPConnection(_WatchedMixin, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedMixin, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        super().init_poolmanager(*args, **kwargs)  # type: ignore[arg-type]
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


@dataclass(frozen=True)
class FetchedKey:
    kid: str
    server: str
    pem: str
    public_key: RSAPublicKey
    fingerprint: str
    bits: int


class _NotFound(Exception):
    pass


class _Unusable(Exception):
    pass


def load_public_key(pem: bytes | str) -> tuple[RSAPublicKey, str]:
    """Parse a PEM SubjectPublicKeyInfo RSA key of >= 2048 bits; return it and its SHA-256 fingerprint."""
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    if not data.lstrip().startswith(b"-----BEGIN PUBLIC KEY-----"):
        raise ValueError("not a PEM public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ValueError("unparseable PEM public key") from exc
    if not isinstance(key, RSAPublicKey):
        raise ValueError("not an RSA public key")
    if key.key_size < MIN_RSA_BITS:
        raise ValueError(f"RSA key of {key.key_size} bits (at least {MIN_RSA_BITS} required)")
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, hashlib.sha256(der).hexdigest()


def _fetch_from(server: str, kid: str, seconds: float) -> FetchedKey:
    url = f"{server}/{kid}"
    timeout = float(connect_settings.KEY_FETCH_TIMEOUT)
    session = requests.Session()
    adapter = _WatchedAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    with _Watchdog(seconds) as dog, session:
        try:
            response = session.get(
                url,
                headers={"User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": "identity"},
                timeout=(timeout, timeout),
                allow_redirects=False,
                stream=True,
            )
            with response:
                if response.status_code == 404:
                    raise _NotFound
                if response.status_code != 200:
                    raise _Unusable(f"HTTP {response.status_code}")
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > MAX_KEY_BYTES:
                    raise _Unusable(f"response over {MAX_KEY_BYTES} bytes")
                body = bytearray()
                for chunk in response.iter_content(chunk_size=4096):
                    body += chunk
                    if len(body) > MAX_KEY_BYTES:
                        raise _Unusable(f"response over {MAX_KEY_BYTES} bytes")
        except requests.RequestException as exc:
            if dog.fired:
                raise _Unusable(f"no complete answer within {seconds:.1f}s") from exc
            raise _Unusable(type(exc).__name__) from exc
        if dog.fired:
            raise _Unusable(f"no complete answer within {seconds:.1f}s")
    try:
        pem = bytes(body).decode("ascii")
        public_key, fingerprint = load_public_key(pem)
    except ValueError as exc:  # UnicodeDecodeError included: a PEM is ASCII
        raise _Unusable(str(exc)[:120]) from exc
    return FetchedKey(kid, server, pem, public_key, fingerprint, public_key.key_size)


class ServerHealth:
    """Key servers that failed moments ago, skipped for ``KEY_FAILURE_BACKOFF`` seconds for every kid.

    Without it, requests naming ever new kids would each wait out a dead server's deadline.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failed_at: dict[str, float] = {}

    def available(self, server: str) -> bool:
        with self._lock:
            failed_at = self._failed_at.get(server)
        return failed_at is None or time.monotonic() - failed_at >= float(
            connect_settings.KEY_FAILURE_BACKOFF
        )

    def record(self, server: str, ok: bool) -> None:
        with self._lock:
            if ok:
                self._failed_at.pop(server, None)
            else:
                self._failed_at[server] = time.monotonic()

    def clear(self) -> None:
        with self._lock:
            self._failed_at.clear()


def fetch_key(kid: str, health: ServerHealth | None = None) -> FetchedKey:
    """Ask each configured key server in order; raise ``UnknownKid`` or ``KeyServerUnavailable``."""
    servers = list(connect_settings.KEY_SERVERS)
    budget_end = time.monotonic() + float(connect_settings.KEY_FETCH_DEADLINE)
    per_server = float(connect_settings.KEY_FETCH_SERVER_DEADLINE)
    failures: list[str] = []
    not_found = 0
    for server in servers:
        remaining = budget_end - time.monotonic()
        if remaining <= 0:
            failures.append(f"{server}: not asked, fetch deadline spent")
            continue
        if health is not None and not health.available(server):
            failures.append(f"{server}: not asked, it failed moments ago")
            continue
        try:
            fetched = _fetch_from(server, kid, min(per_server, remaining))
        except _NotFound:
            not_found += 1
            logger.info("key server %s: kid %r not found", server, kid)
            if health is not None:
                health.record(server, ok=True)
            continue
        except _Unusable as exc:
            failures.append(f"{server}: {exc}")
            logger.warning("key server %s: kid %r not fetched: %s", server, kid, exc)
            if health is not None:
                health.record(server, ok=False)
            continue
        if health is not None:
            health.record(server, ok=True)
        logger.info("key server %s: fetched kid %r (sha256:%s)", server, kid, fetched.fingerprint[:16])
        return fetched
    if not_found == len(servers):
        raise UnknownKid(
            f"No key server knows kid {kid!r}: asked {', '.join(servers)} (404 from each). "
            "Check CONNECT_KEY_SERVERS; production uses Atlassian's two key servers."
        )
    raise KeyServerUnavailable(
        f"No key server returned a usable key for kid {kid!r} ({'; '.join(failures)[:400]}). "
        "Check outbound https to CONNECT_KEY_SERVERS; Jira will retry."
    )


# --- Caching --------------------------------------------------------------------------------


def _negative_cache_key(kid: str) -> str:
    return "connect:kid404:" + hashlib.sha256(kid.encode()).hexdigest()[:40]


def _safe_cache_get(key: str) -> object:
    try:
        return cache.get(key)
    except Exception as exc:  # a cache outage must not block installs: treat as a miss
        logger.warning("key cache: Django cache unavailable (%s)", type(exc).__name__)
        return None


def _safe_cache_set(key: str, value: object, timeout: int) -> None:
    try:
        cache.set(key, value, timeout)
    except Exception as exc:
        logger.warning("key cache: Django cache unavailable (%s)", type(exc).__name__)


def _safe_cache_delete(key: str) -> None:
    try:
        cache.delete(key)
    except Exception as exc:
        logger.warning("key cache: Django cache unavailable (%s)", type(exc).__name__)


class KeyProvider:
    """Keys by kid for the verification middleware and the operators' commands. Thread-safe."""

    def __init__(self) -> None:
        self._memory: OrderedDict[str, tuple[RSAPublicKey, float]] = OrderedDict()
        self._memory_lock = threading.Lock()
        # Striped locks: bounded whatever kids callers send; two kids rarely share a stripe.
        self._kid_locks = [threading.Lock() for _ in range(LOCK_STRIPES)]
        self._failures: OrderedDict[str, float] = OrderedDict()
        self._health = ServerHealth()
        self._held_locks: set[str] = set()
        # Fetches in flight in this process; past it, requests get 503 at once instead of waiting.
        self._fetch_slots = threading.BoundedSemaphore(MAX_CONCURRENT_FETCHES)
        self.fetch_count = 0

    def clear(self) -> None:
        """Forget this process's memory (the database and the Django cache are untouched)."""
        with self._memory_lock:
            self._memory.clear()
            self._failures.clear()
        self._health.clear()

    def _remember(self, kid: str, key: RSAPublicKey, seconds: float) -> None:
        with self._memory_lock:
            self._memory[kid] = (key, time.monotonic() + max(seconds, 0.0))
            self._memory.move_to_end(kid)
            while len(self._memory) > MEMORY_SIZE:
                self._memory.popitem(last=False)

    def _recall(self, kid: str) -> RSAPublicKey | None:
        with self._memory_lock:
            entry = self._memory.get(kid)
            if entry is None:
                return None
            if entry[1] <= time.monotonic():
                del self._memory[kid]
                return None
            self._memory.move_to_end(kid)
            return entry[0]

    def _lock_for(self, kid: str) -> threading.Lock:
        digest = hashlib.blake2b(kid.encode("utf-8"), digest_size=4).digest()
        return self._kid_locks[int.from_bytes(digest, "big") % LOCK_STRIPES]

    def get(self, kid: str) -> RSAPublicKey:
        """The public key for a validated ``kid``, or ``UnknownKid`` / ``KeyServerUnavailable``."""
        key = self._recall(kid)
        if key is not None:
            return key
        with self._lock_for(kid):
            key = self._recall(kid)  # fetched by another thread while this one waited
            if key is not None:
                return key
            try:
                return self._load_or_fetch(kid)
            finally:
                self._release_fetch_lock(kid)

    def _release_fetch_lock(self, kid: str) -> None:
        lock_key = "connect:kidfetch:" + hashlib.sha256(kid.encode()).hexdigest()[:40]
        if lock_key in self._held_locks:
            self._held_locks.discard(lock_key)
            _safe_cache_delete(lock_key)

    def _load_or_fetch(self, kid: str) -> RSAPublicKey:
        now = timezone.now()
        row = InstallKey.objects.filter(kid=kid).first()
        if row is not None and row.expires_at > now:
            key, _ = load_public_key(row.pem)
            self._remember(kid, key, min(MEMORY_TTL, (row.expires_at - now).total_seconds()))
            if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=5):
                InstallKey.objects.filter(pk=row.pk).update(last_used_at=now)
            return key
        if _safe_cache_get(_negative_cache_key(kid)):
            raise UnknownKid(f"No key server knows kid {kid!r} (answer cached). Check CONNECT_KEY_SERVERS.")
        backoff = float(connect_settings.KEY_FAILURE_BACKOFF)
        stale_bound = timedelta(seconds=int(connect_settings.KEY_STALE_IF_ERROR))
        stale_usable = row is not None and row.expires_at + stale_bound > now
        failed_at = self._failures.get(kid)
        if failed_at is not None and time.monotonic() - failed_at < backoff:
            if stale_usable:
                return self._use_stale(kid, row, backoff)
            raise KeyServerUnavailable(
                f"Key servers failed for kid {kid!r} moments ago; not asking again for {backoff:.0f}s."
            )
        shared = self._await_other_process(kid, now)
        if shared is not None:
            return shared
        try:
            fetched = self.fetch(kid)
        except UnknownKid:
            _safe_cache_set(_negative_cache_key(kid), 1, int(connect_settings.KEY_NEGATIVE_TTL))
            if row is not None:  # the servers no longer publish it: Atlassian retired the key
                InstallKey.objects.filter(pk=row.pk).delete()
            raise
        except KeyServerUnavailable:
            self._note_failure(kid)
            if stale_usable:
                return self._use_stale(kid, row, backoff)
            raise
        with self._memory_lock:
            self._failures.pop(kid, None)
        self._store(fetched)
        self._remember(kid, fetched.public_key, min(MEMORY_TTL, float(connect_settings.KEY_TTL)))
        return fetched.public_key

    def _await_other_process(self, kid: str, now: datetime) -> RSAPublicKey | None:
        """Across processes, one fetch per new kid: the holder of a cache lock fetches, others wait.

        Returns the key another process stored meanwhile, or None when this process should fetch
        (it holds the lock, the wait ran out, or the cache is unreachable).
        """
        lock_key = "connect:kidfetch:" + hashlib.sha256(kid.encode()).hexdigest()[:40]
        deadline = float(connect_settings.KEY_FETCH_DEADLINE)
        try:
            acquired = cache.add(lock_key, 1, int(deadline) + 2)
        except Exception as exc:  # no shared cache: fetch in this process
            logger.warning("key cache: Django cache unavailable (%s)", type(exc).__name__)
            return None
        if acquired:
            self._held_locks.add(lock_key)
            # Another process may have stored the key between our first read and the lock.
            return self._stored_key(kid, now)
        until = time.monotonic() + deadline
        while time.monotonic() < until:
            time.sleep(0.05)
            key = self._stored_key(kid, now)
            if key is not None:
                return key
            if not _safe_cache_get(lock_key):
                break  # the other process is done without storing it: try ourselves
        return self._stored_key(kid, now)

    def _stored_key(self, kid: str, now: datetime) -> RSAPublicKey | None:
        row = InstallKey.objects.filter(kid=kid, expires_at__gt=now).first()
        if row is None:
            return None
        key, _ = load_public_key(row.pem)
        self._remember(kid, key, min(MEMORY_TTL, (row.expires_at - timezone.now()).total_seconds()))
        return key

    def _note_failure(self, kid: str) -> None:
        with self._memory_lock:
            self._failures[kid] = time.monotonic()
            self._failures.move_to_end(kid)
            while len(self._failures) > MEMORY_SIZE:  # kids are caller-chosen: stay bounded
                self._failures.popitem(last=False)

    def _use_stale(self, kid: str, row: InstallKey | None, seconds: float) -> RSAPublicKey:
        assert row is not None  # noqa: S101 - guarded by the caller's stale_usable
        logger.warning("key servers down: using kid %r past its TTL (stale-if-error)", kid)
        key, _ = load_public_key(row.pem)
        self._remember(kid, key, seconds)
        return key

    def fetch(self, kid: str) -> FetchedKey:
        """Fetch from the key servers (no cache read). Counted, for tests and diagnostics."""
        if not self._fetch_slots.acquire(blocking=False):
            raise KeyServerUnavailable(
                f"{MAX_CONCURRENT_FETCHES} key fetches are already in progress in this process; "
                "Jira will retry."
            )
        try:
            self.fetch_count += 1
            return fetch_key(kid, self._health)
        finally:
            self._fetch_slots.release()

    def _store(self, fetched: FetchedKey) -> InstallKey:
        now = timezone.now()
        values = {
            "key_server": fetched.server,
            "pem": fetched.pem,
            "fingerprint": fetched.fingerprint,
            "key_bits": fetched.bits,
            "fetched_at": now,
            "expires_at": now + timedelta(seconds=int(connect_settings.KEY_TTL)),
            "last_used_at": now,
        }
        try:
            with transaction.atomic():
                row, _ = InstallKey.objects.update_or_create(kid=fetched.kid, defaults=values)
        except IntegrityError:  # another process stored it first
            InstallKey.objects.filter(kid=fetched.kid).update(**values)
            row = InstallKey.objects.get(kid=fetched.kid)
        return row


provider = KeyProvider()


# --- Operators' services (manage.py connect_keys and the admin's key-cache actions) ------------


@dataclass
class RefreshReport:
    unchanged: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def refresh_keys(
    kids: Iterable[str] | None = None, progress: Callable[[str, str], None] | None = None
) -> RefreshReport:
    """Fetch cached keys again: a kid the servers no longer publish is removed; a failure keeps the row."""
    report = RefreshReport()
    rows = InstallKey.objects.order_by("kid")
    if kids is not None:
        rows = rows.filter(kid__in=list(kids))
    for row in rows:
        try:
            fetched = provider.fetch(row.kid)
        except UnknownKid:
            InstallKey.objects.filter(pk=row.pk).delete()
            report.removed.append(row.kid)
            outcome = "removed (no key server publishes it any more)"
        except KeyServerUnavailable as exc:
            report.failed.append((row.kid, exc.detail))
            outcome = "kept, fetch failed"
        else:
            provider._store(fetched)
            if fetched.fingerprint == row.fingerprint:
                report.unchanged.append(row.kid)
                outcome = "refreshed, unchanged"
            else:
                report.changed.append(row.kid)
                outcome = "refreshed, KEY CHANGED"
        if progress is not None:
            progress(row.kid, outcome)
    provider.clear()
    return report


def prefetch_keys(kids: Iterable[str]) -> list[InstallKey]:
    """Fetch and cache the given kids now; ``UnknownKid``/``KeyServerUnavailable`` as for a request."""
    stored = []
    for kid in kids:
        validate_kid(kid)
        stored.append(provider._store(provider.fetch(kid)))
    provider.clear()
    return stored


def evict_keys(kids: Iterable[str]) -> int:
    """Remove keys from the persistent cache (and this process's memory); returns how many."""
    kids = list(kids)
    deleted = InstallKey.objects.filter(kid__in=kids).delete()[0]
    for kid in kids:
        _safe_cache_delete(_negative_cache_key(kid))
    provider.clear()
    return deleted


def purge_keys(*, expired_only: bool) -> int:
    """Empty the persistent key cache, or only its expired rows; returns how many were removed."""
    rows = InstallKey.objects.all()
    if expired_only:
        rows = rows.filter(expires_at__lte=timezone.now())
    deleted = rows.delete()[0]
    provider.clear()
    return deleted
