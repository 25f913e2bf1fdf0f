"""Forge's JWKS (the keys that sign Forge Invocation Tokens), by ``kid``, with the install-key discipline.

The document at ``FORGE_JWKS_URL`` (Atlassian's: ``https://forge.cdn.prod.atlassian-dev.net/
.well-known/jwks.json``, "Forge remote essentials") is fetched with ``keys.http_get``: one libcurl
transfer with a connect timeout and a total deadline, a size cap enforced while the body streams
(``FORGE_JWKS_MAX_BYTES``), no redirects. It is parsed by PyJWT's ``PyJWKSet``; only RSA keys of
at least 2048 bits, for signatures (``use`` ``sig`` or absent), for RS256 (``alg`` RS256 or
absent) and with a kid are kept.

- The last good document is shared by every process through the Django cache, with the time it
  was fetched, and each process keeps it parsed. It is used for ``FORGE_JWKS_TTL`` seconds, then
  fetched again; while that fails (an error page, a 404, a 500, a slow or oversized answer), the
  old one is used for ``FORGE_JWKS_STALE_IF_ERROR`` more seconds (stale-if-error), and the URL is
  not asked again for ``FAILURE_BACKOFF`` seconds. Without any copy: 503 ``forge_jwks_unavailable``.
- Fetches are single-flight across processes (a lock in the Django cache); the others wait for
  its outcome. Each process also backs off on its own after a failed fetch, so that a cache
  outage does not turn every call into a fetch. The cache entries are named after
  ``FORGE_JWKS_URL``: servers trusting other JWKS URLs may share one cache.
- A process answers from its own copy while it is fresh and holds the kid: no cache call.
- A kid that is not in a fresh document makes at most one refetch per
  ``FORGE_JWKS_REFETCH_INTERVAL`` seconds for every process together (keys rotate); any other
  unknown kid in that interval is refused at once (``forge_unknown_kid``), so a flood of made-up
  kids costs the CDN nothing more.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from lifecycle.conf import connect_settings
from lifecycle.errors import ForgeJwksUnavailable, ForgeUnknownKid
from lifecycle.keys import MIN_RSA_BITS, ServerDown, TooLarge, cache_call, http_get

logger = logging.getLogger(__name__)

FAILURE_BACKOFF = 30  # seconds the URL is not asked again after a failed fetch


def cache_key(what: str, url: str | None = None) -> str:
    """The Django cache key of ``what`` (``document``, ``fetching``, ``refetched``, ``failed``)
    for the JWKS at ``url`` (``FORGE_JWKS_URL``): servers trusting other JWKS URLs may share one
    cache without ever using each other's keys."""
    digest = hashlib.sha256((url or connect_settings.FORGE_JWKS_URL).encode()).hexdigest()[:24]
    return f"connect:forge-jwks:{digest}:{what}"


WAIT_POLL = 0.05


class JwksUnusable(Exception):
    """The answer is not a usable JWKS (its text says why; never the document)."""


def parse_jwks(data: bytes) -> dict[str, RSAPublicKey]:
    """kid -> RSA public key of a JWKS document; ``JwksUnusable`` when it holds no usable key.

    Keys are parsed by PyJWT (``jwt.PyJWKSet``); kept: RSA, at least ``MIN_RSA_BITS`` bits,
    ``use`` ``sig`` or absent, ``alg`` RS256 or absent, a string ``kid``.
    """
    try:
        document = json.loads(data)
    except ValueError:
        raise JwksUnusable("not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksUnusable('not a JWKS (no "keys" list)')
    usable = [
        item
        for item in document["keys"]
        if isinstance(item, dict)
        and item.get("kty") == "RSA"
        and item.get("use", "sig") == "sig"
        and item.get("alg", "RS256") == "RS256"
        and isinstance(item.get("kid"), str)
    ]
    try:
        found = jwt.PyJWKSet(usable).keys if usable else []
    except jwt.PyJWKSetError:
        found = []
    keys = {
        str(key.key_id): key.key
        for key in found
        if isinstance(key.key, RSAPublicKey) and key.key.key_size >= MIN_RSA_BITS
    }
    if not keys:
        raise JwksUnusable(f"no RSA signing key of at least {MIN_RSA_BITS} bits for RS256")
    return keys


def fetch_jwks(url: str) -> tuple[str, dict[str, RSAPublicKey]]:
    """GET and parse the JWKS at ``url``: (document text, keys). ``JwksUnusable`` or
    ``ServerDown`` (``TimedOut`` included) say why not."""
    try:
        status, body = http_get(
            url,
            connect_settings.FORGE_JWKS_FETCH_DEADLINE,
            max_bytes=connect_settings.FORGE_JWKS_MAX_BYTES,
            connect_timeout=connect_settings.FORGE_JWKS_FETCH_TIMEOUT,
            accept="application/json",
        )
    except TooLarge as exc:
        raise JwksUnusable(f"HTTP {exc.status}, over {connect_settings.FORGE_JWKS_MAX_BYTES} bytes") from None
    if status != 200:
        raise JwksUnusable(f"HTTP {status}")
    return body.decode("utf-8", "replace"), parse_jwks(body)


@dataclass(frozen=True)
class _Snapshot:
    keys: dict[str, RSAPublicKey]
    fetched_at: float  # epoch seconds


def _cache(method: str, *args: object) -> object:
    return cache_call(method, *args, label="forge jwks")


class JwksProvider:
    """Forge's signing keys by kid, for the verifier. Thread-safe; one per process (``provider``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshots: dict[str, _Snapshot] = {}  # by FORGE_JWKS_URL
        self._last_refetch = 0.0  # monotonic: this process's own bound when the cache is down
        self._failed_until = 0.0  # monotonic: this process's own backoff when the cache is down
        self.fetch_count = 0

    def clear(self) -> None:
        """Forget this process's copies and bounds (the Django cache keeps the shared one)."""
        with self._lock:
            self._snapshots.clear()
            self._last_refetch = self._failed_until = 0.0

    def get(self, kid: str) -> RSAPublicKey:
        """The key for ``kid``; ``ForgeUnknownKid`` (401) or ``ForgeJwksUnavailable`` (503)."""
        url, ttl = connect_settings.FORGE_JWKS_URL, connect_settings.FORGE_JWKS_TTL
        with self._lock:
            snapshot = self._snapshots.get(url)
        fresh = snapshot is not None and time.time() - snapshot.fetched_at < ttl
        if fresh and snapshot is not None and kid in snapshot.keys:
            return snapshot.keys[kid]  # the common case: no cache call at all
        snapshot = self._shared(url, snapshot)
        if snapshot is not None and time.time() - snapshot.fetched_at < ttl:
            key = snapshot.keys.get(kid)
            if key is not None:
                return key
            if not self._may_refetch(url):
                raise ForgeUnknownKid(
                    f"kid {kid[:80]!r} is not in the Forge JWKS fetched "
                    f"{time.time() - snapshot.fetched_at:.0f} s ago (fetched again at most once every "
                    f"{connect_settings.FORGE_JWKS_REFETCH_INTERVAL} s)."
                )
        snapshot = self._refresh(url, snapshot)
        key = snapshot.keys.get(kid)
        if key is None:
            raise ForgeUnknownKid(f"kid {kid[:80]!r} is not in the Forge JWKS at FORGE_JWKS_URL.")
        return key

    def _shared(self, url: str, mine: _Snapshot | None) -> _Snapshot | None:
        """The newest of this process's copy and the one shared through the Django cache."""
        shared = _cache("get", cache_key("document", url))
        if isinstance(shared, dict) and (mine is None or shared.get("fetched_at", 0) > mine.fetched_at):
            try:
                mine = _Snapshot(parse_jwks(str(shared["document"]).encode()), float(shared["fetched_at"]))
            except (JwksUnusable, KeyError, TypeError, ValueError):
                return mine
            with self._lock:
                self._snapshots[url] = mine
        return mine

    def _may_refetch(self, url: str) -> bool:
        """One refetch for an unknown kid per interval, for every process (and this one alone
        when the cache is down)."""
        interval = connect_settings.FORGE_JWKS_REFETCH_INTERVAL
        now = time.monotonic()
        with self._lock:
            if now - self._last_refetch < interval:
                return False
            self._last_refetch = now
        return _cache("add", cache_key("refetched", url), 1, interval) is not False

    def _refresh(self, url: str, old: _Snapshot | None) -> _Snapshot:
        """A newer document than ``old``: fetched here, or by the process holding the fetch lock;
        ``old`` within stale-if-error when the fetch fails; else ``ForgeJwksUnavailable``."""
        with self._lock:
            backing_off = time.monotonic() < self._failed_until
        if backing_off or _cache("get", cache_key("failed", url)):
            return self._stale(old, "the last fetch failed moments ago")
        deadline = connect_settings.FORGE_JWKS_FETCH_DEADLINE
        held = _cache("add", cache_key("fetching", url), 1, int(deadline) + 2)
        if held is False:  # another process is fetching: share its outcome
            until = time.monotonic() + deadline + 1
            while time.monotonic() < until:
                time.sleep(WAIT_POLL)
                lock_gone = not _cache("get", cache_key("fetching", url))
                # Read after the lock: its holder stores the document before it lets go.
                current = self._shared(url, old)
                if current is not None and (old is None or current.fetched_at > old.fetched_at):
                    return current
                if lock_gone:
                    break
            return self._stale(old, "a concurrent fetch got no usable JWKS")
        try:
            if held:  # another process may have stored one just before this one took the lock
                current = self._shared(url, old)
                if current is not None and (old is None or current.fetched_at > old.fetched_at):
                    return current
            return self._fetch(url)
        except (JwksUnusable, ServerDown) as exc:
            logger.warning("forge jwks: %s not fetched: %s", url, exc)
            with self._lock:
                self._failed_until = time.monotonic() + FAILURE_BACKOFF
            _cache("set", cache_key("failed", url), 1, FAILURE_BACKOFF)
            return self._stale(old, str(exc))
        finally:
            if held:
                _cache("delete", cache_key("fetching", url))

    def _fetch(self, url: str) -> _Snapshot:
        self.fetch_count += 1
        document, keys = fetch_jwks(url)
        snapshot = _Snapshot(keys, time.time())
        keep = connect_settings.FORGE_JWKS_TTL + connect_settings.FORGE_JWKS_STALE_IF_ERROR
        entry = {"document": document, "fetched_at": snapshot.fetched_at}
        _cache("set", cache_key("document", url), entry, keep)
        with self._lock:
            self._snapshots[url] = snapshot
            self._failed_until = 0.0
        logger.info("forge jwks: fetched %d keys from %s", len(keys), url)
        return snapshot

    def _stale(self, old: _Snapshot | None, why: str) -> _Snapshot:
        bound = connect_settings.FORGE_JWKS_TTL + connect_settings.FORGE_JWKS_STALE_IF_ERROR
        if old is not None and time.time() - old.fetched_at < bound:
            return old
        raise ForgeJwksUnavailable(
            f"The Forge JWKS could not be fetched from FORGE_JWKS_URL ({why[:200]}) and no copy is cached; "
            "check outbound https to it."
        )


provider = JwksProvider()
