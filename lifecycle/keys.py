"""Atlassian's install-signing public keys, by ``kid`` (SPEC 1.2 and section 3 step 4).

A key is looked up in this process's memory, then in the ``InstallKey`` table (shared by every
process), then on the key servers ``CONNECT_KEY_SERVERS``, in order, at ``<server>/<kid>`` (no
urljoin). A fetch is one libcurl transfer (pycurl): a connect timeout, a total deadline that also
cuts off a server dripping its headers or body, a 16 KB cap enforced while the body streams
(libcurl's MAXFILESIZE), no redirects, http and https only.

What an answer means, per server:

- 200 with an RSA public key PEM of at least 2048 bits: the key.
- 403, 404 or 410: this server does not publish the kid (a CDN answers 403 for an object it
  lacks). When every server says so, the kid is ``unknown_kid`` (401), remembered for
  ``KEY_NEGATIVE_TTL`` seconds in the Django cache, for that kid only.
- Another status, or a 200 that is not a usable key (HTML, oversized, a weak or non-RSA key):
  unusable for this kid; it says nothing about the server or about any other kid.
- Refused, reset, TLS failure, timeout, or 5xx: the server is down. After
  ``KEY_SERVER_FAILURES`` such failures in a row, this process skips the server for
  ``KEY_FAILURE_BACKOFF`` seconds, then lets one probe through (half-open).

Without a key from any server and without a "not published" from all of them, the answer is
``key_server_unavailable`` (503, Jira retries), and nothing about that kid is remembered:
the next request asks again. Concurrent requests for one new kid, in every process that shares
the Django cache, cause one fetch (a cache lock); the others wait for its outcome. When every
server fails, a cached key up to ``KEY_STALE_IF_ERROR`` seconds past its TTL is still used.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

import certifi
import pycurl
from cachetools import TLRUCache
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_ratelimit.core import get_usage

from lifecycle.conf import connect_settings
from lifecycle.errors import CacheUnavailable, KeyFetchRateLimited, KeyServerUnavailable, UnknownKid
from lifecycle.models import InstallKey
from lifecycle.protocol import validate_kid

logger = logging.getLogger(__name__)

MAX_KEY_BYTES = 16 * 1024
MIN_RSA_BITS = 2048
NOT_PUBLISHED = frozenset({403, 404, 410})
MEMORY_SIZE = 256
MEMORY_TTL = 300.0  # seconds a process trusts its own copy before it reads the database again
MAX_CONCURRENT_FETCHES = 4
WAIT_POLL = 0.05  # seconds between looks at another process's fetch
USER_AGENT = "django-connect-app key fetcher (+https://developer.atlassian.com/cloud/jira/platform/)"


@dataclass(frozen=True)
class FetchedKey:
    """A key as a key server published it: ``pem`` is ASCII, ``fingerprint`` the DER's SHA-256 hex."""

    kid: str
    server: str
    pem: str
    public_key: RSAPublicKey
    fingerprint: str
    bits: int


class KeyNotPublished(Exception):
    """The server answered 403, 404 or 410 for this kid."""


class UnusableAnswer(Exception):
    """The server answered, but not with a usable key for this kid (says nothing about others)."""


class ServerDown(Exception):
    """Refused, reset, TLS failure, timeout or 5xx: counts towards skipping the server."""


class TimedOut(ServerDown):
    """No complete answer within the time given (counted only when it was the full per-server time)."""


def load_public_key(pem: bytes | str) -> tuple[RSAPublicKey, str]:
    """Parse a PEM SubjectPublicKeyInfo RSA key of >= 2048 bits; return it and its SHA-256 fingerprint.

    Raises ``ValueError`` for anything else (PKCS#1, a private key, EC, a weak key, junk).
    """
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    if not data.lstrip().startswith(b"-----BEGIN PUBLIC KEY-----"):
        raise ValueError("not a PEM public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError("unparseable PEM public key") from exc
    if not isinstance(key, RSAPublicKey):
        raise ValueError("not an RSA public key")
    if key.key_size < MIN_RSA_BITS:
        raise ValueError(f"RSA key of {key.key_size} bits (at least {MIN_RSA_BITS} required)")
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, hashlib.sha256(der).hexdigest()


class TooLarge(Exception):
    """The answer's body went past the cap (``status``: the answer's HTTP status)."""

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"HTTP {status}, body over the cap")


def http_get(
    url: str, seconds: float, *, max_bytes: int, connect_timeout: float, accept: str = "*/*"
) -> tuple[int, bytes]:
    """GET ``url`` with libcurl: (status, body). One transfer, no redirects, http(s) only.

    ``seconds``: the whole transfer's deadline (it also cuts off a server dripping its headers or
    body); ``connect_timeout`` (seconds) at most of it to connect; ``max_bytes``: the body's cap,
    enforced while it streams. Raises :class:`TooLarge` past the cap, :class:`TimedOut` past the
    deadline, :class:`ServerDown` for refused, reset or TLS failures (the curl error in its text).
    """
    body = bytearray()

    def write(chunk: bytes) -> int | None:
        # The cap whatever libcurl's version (MAXFILESIZE covers streamed bodies only from 8.4).
        body.extend(chunk)
        return 0 if len(body) > max_bytes else None  # 0 aborts the transfer

    curl = pycurl.Curl()
    try:
        curl.setopt(pycurl.URL, url)
        curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        curl.setopt(pycurl.FOLLOWLOCATION, 0)
        curl.setopt(pycurl.NOSIGNAL, 1)  # thread-safe timeouts
        curl.setopt(pycurl.CONNECTTIMEOUT_MS, max(int(min(connect_timeout, seconds) * 1000), 1))
        curl.setopt(pycurl.TIMEOUT_MS, max(int(seconds * 1000), 1))  # the whole transfer
        curl.setopt(pycurl.MAXFILESIZE, max_bytes)  # also while a body of unknown length streams
        curl.setopt(pycurl.CAINFO, certifi.where())
        curl.setopt(pycurl.USERAGENT, USER_AGENT)
        curl.setopt(pycurl.HTTPHEADER, [f"Accept: {accept}"])
        curl.setopt(pycurl.WRITEFUNCTION, write)
        try:
            curl.perform()
        except pycurl.error as exc:
            code = exc.args[0]
            if code in (pycurl.E_FILESIZE_EXCEEDED, pycurl.E_WRITE_ERROR):
                raise TooLarge(curl.getinfo(pycurl.RESPONSE_CODE)) from None
            if code == pycurl.E_OPERATION_TIMEDOUT:
                raise TimedOut(f"no complete answer within {seconds:.1f}s") from None
            raise ServerDown(f"{str(exc.args[-1])[:120]} (curl error {code})") from None
        return curl.getinfo(pycurl.RESPONSE_CODE), bytes(body)
    finally:
        curl.close()


def ask_server(server: str, kid: str, seconds: float) -> FetchedKey:
    """GET ``<server>/<kid>`` within ``seconds`` in all; the key, or the exception saying why not.

    Raises ``KeyNotPublished``, ``UnusableAnswer`` or ``ServerDown`` (see the module docstring).
    """
    try:
        status, body = http_get(
            f"{server}/{kid}",
            seconds,
            max_bytes=MAX_KEY_BYTES,
            connect_timeout=connect_settings.KEY_FETCH_TIMEOUT,
        )
    except TooLarge as exc:
        if exc.status in NOT_PUBLISHED:
            raise KeyNotPublished from None
        if exc.status >= 500:  # an outage page, however large, is still an outage
            raise ServerDown(f"HTTP {exc.status}") from None
        raise UnusableAnswer(f"response over {MAX_KEY_BYTES} bytes") from None
    if status in NOT_PUBLISHED:
        raise KeyNotPublished(f"HTTP {status}")
    if status >= 500:
        raise ServerDown(f"HTTP {status}")
    if status != 200:
        raise UnusableAnswer(f"HTTP {status}")
    try:
        pem = body.decode("ascii")
        public_key, fingerprint = load_public_key(pem)
    except ValueError as exc:  # UnicodeDecodeError included: a PEM is ASCII
        raise UnusableAnswer(str(exc)[:120]) from None
    return FetchedKey(kid, server, pem, public_key, fingerprint, public_key.key_size)


class ServerBreaker:
    """Per process, per key server: skip a server that is down, then probe it once (half-open).

    Closed until ``KEY_SERVER_FAILURES`` down answers in a row; then open (skipped) for
    ``KEY_FAILURE_BACKOFF`` seconds; then one caller may probe: an answer of any kind closes it,
    another failure opens it again. Thread-safe. (pybreaker holds its lock through the guarded
    call, which would serialise every fetch; hence these few lines.)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[str, int] = {}
        self._open_until: dict[str, float] = {}
        self._probing: set[str] = set()

    def allow(self, server: str) -> str | None:
        """May ``server`` be asked now? ``"call"``, ``"probe"`` (once per half-open period) or None."""
        with self._lock:
            until = self._open_until.get(server)
            if until is None:
                return "call"
            if time.monotonic() < until or server in self._probing:
                return None
            self._probing.add(server)
            return "probe"

    def record(self, server: str, *, up: bool | None, probe: bool = False) -> None:
        """Note an answer (``up``), a down failure, or nothing to judge by (None), from ``server``."""
        with self._lock:
            if probe:
                self._probing.discard(server)
            if up is None:
                return
            if up:
                self._failures.pop(server, None)
                self._open_until.pop(server, None)
                return
            failures = self._failures[server] = self._failures.get(server, 0) + 1
            if failures >= connect_settings.KEY_SERVER_FAILURES:
                self._open_until[server] = time.monotonic() + connect_settings.KEY_FAILURE_BACKOFF

    def clear(self) -> None:
        with self._lock:
            self._failures.clear()
            self._open_until.clear()
            self._probing.clear()


def fetch_key(kid: str, breaker: ServerBreaker | None = None) -> FetchedKey:
    """Ask each configured key server in order; raise ``UnknownKid`` or ``KeyServerUnavailable``.

    ``KEY_FETCH_SERVER_DEADLINE`` seconds at most per server, ``KEY_FETCH_DEADLINE`` in all.
    """
    servers = list(connect_settings.KEY_SERVERS)
    budget_end = time.monotonic() + connect_settings.KEY_FETCH_DEADLINE
    per_server = connect_settings.KEY_FETCH_SERVER_DEADLINE
    problems: list[str] = []
    for server in servers:
        remaining = budget_end - time.monotonic()
        if remaining <= 0:
            problems.append(f"{server}: not asked, fetch deadline spent")
            continue
        permit = "call" if breaker is None else breaker.allow(server)
        if permit is None:
            failures = connect_settings.KEY_SERVER_FAILURES
            problems.append(f"{server}: not asked, down on its last {failures} tries")
            continue
        seconds = min(per_server, remaining)
        up: bool | None = True
        try:
            fetched = ask_server(server, kid, seconds)
        except KeyNotPublished:
            logger.info("key server %s: kid %r not published", server, kid)
        except (UnusableAnswer, ServerDown) as exc:
            up = not isinstance(exc, ServerDown)
            if isinstance(exc, TimedOut) and seconds < per_server:
                up = None  # it had only what earlier servers left of the budget: no verdict
            problems.append(f"{server}: {exc}")
            logger.warning("key server %s: kid %r not fetched: %s", server, kid, exc)
        else:
            logger.info("key server %s: fetched kid %r (sha256:%s)", server, kid, fetched.fingerprint[:16])
            return fetched
        finally:
            if breaker is not None:
                breaker.record(server, up=up, probe=permit == "probe")
    if not problems:
        raise UnknownKid(
            f"No key server publishes kid {kid!r}: asked {', '.join(servers)} (403/404 from each). "
            "Check CONNECT_KEY_SERVERS; production uses Atlassian's two key servers."
        )
    raise KeyServerUnavailable(
        f"No key server returned a usable key for kid {kid!r} ({'; '.join(problems)[:400]}). "
        "Check outbound https to CONNECT_KEY_SERVERS; Jira will retry."
    )


# --- Caching --------------------------------------------------------------------------------


def _cache_key(prefix: str, kid: str) -> str:
    return f"connect:{prefix}:" + hashlib.sha256(kid.encode()).hexdigest()[:40]


def cache_call(method: str, *args: object, label: str = "key cache") -> object:
    """A Django cache call; an outage is logged (under ``label``) and read as a miss: it must
    not block installs or Forge calls (``lifecycle.jwks`` uses it too)."""
    try:
        return getattr(cache, method)(*args)
    except Exception as exc:
        logger.warning("%s: Django cache unavailable (%s)", label, type(exc).__name__)
        return None


class KeyProvider:
    """Keys by kid for the verification middleware and the operators' commands. Thread-safe."""

    def __init__(self) -> None:
        # (key, seconds to keep it): each entry expires on its own clock, the least recent goes first.
        self._memory: TLRUCache[str, tuple[RSAPublicKey, float]] = TLRUCache(
            maxsize=MEMORY_SIZE, ttu=lambda _kid, value, now: now + value[1], timer=time.monotonic
        )
        self._lock = threading.Lock()
        self._breaker = ServerBreaker()
        # Fetches in flight in this process; past it, requests get 503 at once instead of waiting.
        self._fetch_slots = threading.BoundedSemaphore(MAX_CONCURRENT_FETCHES)
        self.fetch_count = 0

    def clear(self) -> None:
        """Forget this process's memory and server health (the database and Django cache stay)."""
        with self._lock:
            self._memory.clear()
        self._breaker.clear()

    def _remember(self, kid: str, key: RSAPublicKey, seconds: float) -> None:
        with self._lock:
            if seconds > 0:
                self._memory[kid] = (key, seconds)
            else:
                self._memory.pop(kid, None)

    def _recall(self, kid: str) -> RSAPublicKey | None:
        with self._lock:
            entry = self._memory.get(kid)
        return None if entry is None else entry[0]

    def get(self, kid: str, source: str | None = None) -> RSAPublicKey:
        """The public key for a validated ``kid``; ``UnknownKid`` (401) or ``KeyServerUnavailable`` (503).

        ``source``: the requester's address. A kid that must be fetched counts against
        ``KEY_FETCH_RATE_PER_SOURCE`` for it and ``KEY_FETCH_RATE`` in all; past either,
        ``KeyFetchRateLimited`` (503 with Retry-After) at once, without asking a key server.
        """
        key = self._recall(kid)
        if key is not None:
            return key
        row = InstallKey.objects.filter(kid=kid).first()
        if row is not None and row.expires_at > timezone.now():
            return self._use_row(row)
        if cache_call("get", _cache_key("kid404", kid)):
            raise _not_published(kid)
        admit_fetch(source)
        lock_key = _cache_key("kidfetch", kid)
        lock_seconds = int(connect_settings.KEY_FETCH_DEADLINE) + 2
        held = cache_call("add", lock_key, 1, lock_seconds)
        if held is False:  # another thread or process is fetching this kid
            return self._await_fetch(kid, lock_key, row)
        try:
            stored = self._stored_key(kid)  # stored by another process since our first read
            return stored if stored is not None else self._fetch_and_store(kid, row)
        finally:
            if held:
                cache_call("delete", lock_key)

    def _use_row(self, row: InstallKey) -> RSAPublicKey:
        now = timezone.now()
        key, _ = load_public_key(row.pem)
        self._remember(row.kid, key, min(MEMORY_TTL, (row.expires_at - now).total_seconds()))
        if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=5):
            InstallKey.objects.filter(pk=row.pk).update(last_used_at=now)
        return key

    def _stored_key(self, kid: str) -> RSAPublicKey | None:
        row = InstallKey.objects.filter(kid=kid, expires_at__gt=timezone.now()).first()
        return None if row is None else self._use_row(row)

    def _fetch_and_store(self, kid: str, row: InstallKey | None) -> RSAPublicKey:
        try:
            fetched = self.fetch(kid)
        except UnknownKid:
            cache_call("set", _cache_key("kid404", kid), 1, connect_settings.KEY_NEGATIVE_TTL)
            if row is not None:  # the servers no longer publish it: Atlassian retired the key
                InstallKey.objects.filter(pk=row.pk).delete()
            raise
        except KeyServerUnavailable:
            stale = _stale_row(row)
            if stale is not None:
                return self._use_stale(stale)
            raise
        store_key(fetched)
        self._remember(kid, fetched.public_key, min(MEMORY_TTL, connect_settings.KEY_TTL))
        return fetched.public_key

    def _await_fetch(self, kid: str, lock_key: str, row: InstallKey | None) -> RSAPublicKey:
        """Wait for the fetch another caller holds the lock for, and share its outcome."""
        until = time.monotonic() + connect_settings.KEY_FETCH_DEADLINE + 1
        done = False
        while not done:
            time.sleep(WAIT_POLL)
            # Read the lock first: the holder stores its outcome before it lets go of the lock.
            done = not cache_call("get", lock_key) or time.monotonic() >= until
            key = self._stored_key(kid)
            if key is not None:
                return key
            if cache_call("get", _cache_key("kid404", kid)):
                raise _not_published(kid)
        stale = _stale_row(row)
        if stale is not None:
            return self._use_stale(stale)
        raise KeyServerUnavailable(
            f"A concurrent fetch of kid {kid!r} got no usable key from CONNECT_KEY_SERVERS; Jira will retry."
        )

    def _use_stale(self, row: InstallKey) -> RSAPublicKey:
        logger.warning("key servers down: using kid %r past its TTL (stale-if-error)", row.kid)
        key, _ = load_public_key(row.pem)
        self._remember(row.kid, key, connect_settings.KEY_FAILURE_BACKOFF)
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
            return fetch_key(kid, self._breaker)
        finally:
            self._fetch_slots.release()


def admit_fetch(source: str | None) -> None:
    """Count one fetch of a kid not cached yet, per source and in all; ``KeyFetchRateLimited`` past a limit.

    The counters live in the Django cache (django-ratelimit's fixed windows), so every worker and
    host shares them; a cache that fails refuses the fetch (503, Jira retries).
    """
    limits = (
        ("source", source or "-", connect_settings.KEY_FETCH_RATE_PER_SOURCE),
        ("all", "all", connect_settings.KEY_FETCH_RATE),
    )
    for scope, value, rate in limits:
        try:
            usage = get_usage(
                None,
                group=f"connect-kid-fetch-{scope}",
                key=lambda _group, _request, v=value: v,
                rate=rate,
                increment=True,
            )
        except Exception as exc:  # the shared counters are out of reach: refuse, Jira may retry
            logger.warning("key fetches: Django cache unavailable (%s)", type(exc).__name__)
            raise CacheUnavailable() from exc
        if usage is not None and usage["should_limit"]:
            wait = max(int(usage["time_left"]), 1)
            logger.warning("key fetches: limit %s reached (%s); refusing for %ss", rate, scope, wait)
            raise KeyFetchRateLimited(
                f"More than {rate} fetches of install keys not cached yet "
                f"{'from this address' if scope == 'source' else 'in all'}; retry after {wait}s.",
                retry_after=wait,
            )


def _not_published(kid: str) -> UnknownKid:
    return UnknownKid(f"No key server publishes kid {kid!r} (a recent answer). Check CONNECT_KEY_SERVERS.")


def _stale_row(row: InstallKey | None) -> InstallKey | None:
    """``row`` if it may still serve while every key server fails (stale-if-error), else None."""
    bound = timedelta(seconds=connect_settings.KEY_STALE_IF_ERROR)
    return row if row is not None and row.expires_at + bound > timezone.now() else None


def store_key(fetched: FetchedKey) -> InstallKey:
    """Insert or update the ``InstallKey`` row of a fetched key; its TTL starts now."""
    now = timezone.now()
    values = {
        "key_server": fetched.server,
        "pem": fetched.pem,
        "fingerprint": fetched.fingerprint,
        "key_bits": fetched.bits,
        "fetched_at": now,
        "expires_at": now + timedelta(seconds=connect_settings.KEY_TTL),
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
    """What ``refresh_keys`` did, by kid; ``failed`` pairs a kid with the reason's detail."""

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
            store_key(fetched)
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
        stored.append(store_key(provider.fetch(kid)))
    provider.clear()
    return stored


def evict_keys(kids: Iterable[str]) -> int:
    """Remove keys from the persistent cache (and this process's memory); returns how many."""
    kids = list(kids)
    deleted = InstallKey.objects.filter(kid__in=kids).delete()[0]
    for kid in kids:
        cache_call("delete", _cache_key("kid404", kid))
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
