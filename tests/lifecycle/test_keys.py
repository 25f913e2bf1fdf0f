"""lifecycle/keys.py: Atlassian's install-signing keys by kid (SPEC 1.2 and section 3 step 4).

Every fetch goes to a real loopback key server (``lifecycle.simulator.KeyServer``): the URL is
``<server>/<kid>``, servers are asked in order, redirects are not followed, slow servers are cut
off by libcurl's total deadline, and only an RSA key of >= 2048 bits is accepted and cached.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

import lifecycle.keys as keys_module
from connect_testkit import KeyServer, generate_rsa_key, public_pem
from lifecycle.errors import KeyServerUnavailable, UnknownKid
from lifecycle.keys import MEMORY_SIZE, KeyProvider, load_public_key, provider
from lifecycle.models import InstallKey
from tests.conftest import KID

pytestmark = pytest.mark.django_db

SLOW_LIMITS = {"KEY_FETCH_TIMEOUT": 1.0, "KEY_FETCH_SERVER_DEADLINE": 1.5, "KEY_FETCH_DEADLINE": 2.5}


# --- Helpers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_rsa_key():
    return generate_rsa_key(1024)


@pytest.fixture(scope="module")
def _second_server_module():
    server = KeyServer().start()
    yield server
    server.stop()


@pytest.fixture
def second_server(_second_server_module):
    """Another loopback key server (behaviour "normal", no keys, no requests) for one test."""
    _second_server_module.reset()
    yield _second_server_module
    _second_server_module.reset()


def _configure(settings, **values):
    settings.CONNECT = {**settings.CONNECT, **values}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _raw_server(response: bytes):
    """A one-shot loopback HTTP server that answers any request with ``response`` and closes."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(5)

    def serve():
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(response)
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        thread.join(timeout=5)


def _same_key(public_key, private_key) -> bool:
    return public_key.public_numbers() == private_key.public_key().public_numbers()


def _verifies(public_key, private_key) -> bool:
    message = b"installed callback"
    signature = private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())  # raises if not
    return True


def _fingerprint(private_key) -> str:
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def _timed_get(kid: str, expected: type[Exception]):
    started = time.monotonic()
    with pytest.raises(expected) as caught:
        provider.get(kid)
    return caught.value, time.monotonic() - started


# --- load_public_key --------------------------------------------------------------------------


def test_load_public_key_accepts_a_2048_bit_pem_and_returns_its_der_fingerprint(rsa_key):
    pem = public_pem(rsa_key)
    for given in (pem, pem.decode("ascii")):
        key, fingerprint = load_public_key(given)
        assert _same_key(key, rsa_key)
        assert key.key_size == 2048
        assert fingerprint == _fingerprint(rsa_key)
        assert len(fingerprint) == 64


def test_load_public_key_refuses_a_1024_bit_rsa_key(small_rsa_key):
    with pytest.raises(ValueError, match="1024 bits"):
        load_public_key(public_pem(small_rsa_key))


def test_load_public_key_refuses_an_ec_key():
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert ec_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    with pytest.raises(ValueError, match="not an RSA public key"):
        load_public_key(ec_pem)


def test_load_public_key_refuses_a_pkcs1_rsa_public_key_pem(rsa_key):
    pkcs1 = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    assert pkcs1.startswith(b"-----BEGIN RSA PUBLIC KEY-----")
    with pytest.raises(ValueError):
        load_public_key(pkcs1)


@pytest.mark.parametrize(
    "data",
    [
        b"<html><body>Sign in</body></html>",
        b"\x00\xffjunk\x80",
        b"",
        "-----BEGIN PUBLIC KEY-----\nnot base64 at all!\n-----END PUBLIC KEY-----\n",
        b"-----BEGIN PUBLIC KEY-----\n" + b"A" * 300,
        b"-----BEGIN PUBLIC KEY-----\nMA0wBQYDKgMEAwQAAQL/\n-----END PUBLIC KEY-----\n",
    ],
    ids=["html", "junk", "empty", "bad-base64", "truncated", "unknown-algorithm-oid"],
)
def test_load_public_key_refuses_what_is_not_a_public_key(data):
    with pytest.raises(ValueError):
        load_public_key(data)


def test_load_public_key_refuses_a_private_key_pem(rsa_key):
    private = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError):
        load_public_key(private)


# --- Fetching and caching ---------------------------------------------------------------------


def test_first_get_fetches_and_stores_then_memory_then_database_serve_it(key_server, rsa_key, settings):
    _configure(settings, KEY_TTL=3600)
    before = timezone.now()

    key = provider.get(KID)

    assert _verifies(key, rsa_key)
    assert key_server.requests == ["/" + KID]
    assert provider.fetch_count == 1
    row = InstallKey.objects.get(kid=KID)
    assert row.key_server == key_server.url
    assert row.fingerprint == _fingerprint(rsa_key)
    assert row.key_bits == 2048
    assert row.pem == public_pem(rsa_key).decode("ascii")
    expected = before + timedelta(seconds=3600)
    assert expected - timedelta(seconds=5) <= row.expires_at <= expected + timedelta(seconds=60)

    again = provider.get(KID)  # memory
    assert _same_key(again, rsa_key)
    assert key_server.requests == ["/" + KID]
    assert provider.fetch_count == 1

    provider.clear()
    key_server.behaviour = "error"  # the database row must serve it, not the server
    from_db = provider.get(KID)
    assert _same_key(from_db, rsa_key)
    assert key_server.requests == ["/" + KID]
    assert provider.fetch_count == 1
    assert InstallKey.objects.count() == 1


@pytest.mark.parametrize("kid", ["a1/b2-c3", "x_y/z/0-1-2", KID])
def test_url_is_exactly_server_slash_kid(key_server, rsa_key, kid):
    key_server.publish(kid, rsa_key)
    assert _same_key(provider.get(kid), rsa_key)
    assert key_server.requests == ["/" + kid]
    assert InstallKey.objects.get(kid=kid).key_server == key_server.url


def test_server_path_prefix_is_kept_no_urljoin(key_server, rsa_key, settings):
    # urljoin("http://host/prefix", kid) would drop "prefix"; SPEC says base + "/" + kid.
    key_server.publish("prefix/" + KID, rsa_key)
    _configure(settings, KEY_SERVERS=[key_server.url + "/prefix"])
    assert _same_key(provider.get(KID), rsa_key)
    assert key_server.requests == ["/prefix/" + KID]


# --- Misbehaving servers: one server ----------------------------------------------------------


def test_not_found_is_unknown_kid_naming_the_server(key_server):
    key_server.behaviour = "not_found"
    error, elapsed = _timed_get(KID, UnknownKid)
    assert error.status_code == 401
    assert error.code == "unknown_kid"
    assert key_server.url in error.detail
    assert key_server.requests == ["/" + KID]
    assert not InstallKey.objects.exists()
    assert elapsed < 1.0


@pytest.mark.parametrize("behaviour", ["error", "html", "redirect", "oversize"])
def test_unusable_answer_is_key_server_unavailable(key_server, behaviour):
    key_server.behaviour = behaviour
    error, elapsed = _timed_get(KID, KeyServerUnavailable)
    assert error.status_code == 503
    assert error.code == "key_server_unavailable"
    assert error.retry_after > 0
    assert key_server.requests == ["/" + KID]  # a redirect target is never requested
    assert not InstallKey.objects.exists()
    assert elapsed < 1.0


@pytest.mark.parametrize("which", ["small_rsa_key", "ec"])
def test_published_key_that_is_too_weak_or_not_rsa_is_refused(key_server, small_rsa_key, which):
    if which == "ec":
        key_server.keys[KID] = (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    else:
        key_server.keys[KID] = public_pem(small_rsa_key)
    error, elapsed = _timed_get(KID, KeyServerUnavailable)
    assert error.status_code == 503
    assert key_server.requests == ["/" + KID]
    assert not InstallKey.objects.exists()
    assert elapsed < 1.0


def test_connection_refused_is_key_server_unavailable(key_server, settings):
    url = f"http://127.0.0.1:{_free_port()}"
    _configure(settings, KEY_SERVERS=[url])
    error, elapsed = _timed_get(KID, KeyServerUnavailable)
    assert error.status_code == 503
    assert error.retry_after > 0
    assert url in error.detail
    assert key_server.requests == []
    assert not InstallKey.objects.exists()
    assert elapsed < 1.0


def test_body_over_the_cap_without_content_length_is_refused(key_server, rsa_key, settings):
    # No Content-Length: the streaming cap (16 KB) must stop it, not the declared length.
    body = public_pem(rsa_key) + b"\n" + b"A" * 65536
    response = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-pem-file\r\nConnection: close\r\n\r\n" + body
    with _raw_server(response) as url:
        _configure(settings, KEY_SERVERS=[url])
        error, elapsed = _timed_get(KID, KeyServerUnavailable)
    assert "16384" in error.detail
    assert not InstallKey.objects.exists()
    assert elapsed < 1.0


@pytest.mark.parametrize("behaviour", ["slow_body", "slow_headers", "hang"])
def test_slow_servers_are_cut_off_by_the_deadline(key_server, settings, behaviour):
    _configure(settings, **SLOW_LIMITS)
    key_server.behaviour = behaviour
    error, elapsed = _timed_get(KID, KeyServerUnavailable)
    assert error.status_code == 503
    assert key_server.requests == ["/" + KID]
    assert not InstallKey.objects.exists()
    # The drip sends a byte every 0.5 s, so no per-read timeout trips: the total deadline must.
    assert elapsed < 3.5


# --- Several servers --------------------------------------------------------------------------


@pytest.mark.parametrize("first_behaviour", ["error", "not_found", "html", "redirect"])
def test_next_server_is_asked_when_the_first_fails(
    key_server, second_server, rsa_key, settings, first_behaviour
):
    second_server.behaviour = first_behaviour
    _configure(settings, KEY_SERVERS=[second_server.url, key_server.url])
    assert _same_key(provider.get(KID), rsa_key)
    # The first server was asked (and, had the good one been asked first, it would not have been).
    assert second_server.requests == ["/" + KID]
    assert key_server.requests == ["/" + KID]
    assert InstallKey.objects.get(kid=KID).key_server == key_server.url
    assert provider.fetch_count == 1


def test_first_server_with_the_key_wins_and_the_second_is_not_asked(
    key_server, second_server, rsa_key, other_rsa_key, settings
):
    second_server.publish(KID, other_rsa_key)
    _configure(settings, KEY_SERVERS=[key_server.url, second_server.url])
    assert _same_key(provider.get(KID), rsa_key)
    assert second_server.requests == []


def test_both_servers_404_is_unknown_kid(key_server, second_server, settings):
    key_server.behaviour = "not_found"
    _configure(settings, KEY_SERVERS=[second_server.url, key_server.url])
    error, _ = _timed_get(KID, UnknownKid)
    assert key_server.url in error.detail and second_server.url in error.detail
    assert second_server.requests == ["/" + KID] and key_server.requests == ["/" + KID]
    assert not InstallKey.objects.exists()


@pytest.mark.parametrize("order", ["404-then-500", "500-then-404"])
def test_one_404_and_one_500_is_key_server_unavailable(key_server, second_server, settings, order):
    key_server.behaviour = "not_found"
    second_server.behaviour = "error"
    servers = [key_server.url, second_server.url]
    _configure(settings, KEY_SERVERS=servers if order == "404-then-500" else servers[::-1])
    error, _ = _timed_get(KID, KeyServerUnavailable)
    assert error.status_code == 503
    assert key_server.requests == ["/" + KID] and second_server.requests == ["/" + KID]
    assert not InstallKey.objects.exists()


def test_slow_first_server_leaves_budget_for_the_second(key_server, second_server, rsa_key, settings):
    second_server.behaviour = "slow_body"
    _configure(settings, KEY_SERVERS=[second_server.url, key_server.url], **SLOW_LIMITS)
    started = time.monotonic()
    assert _same_key(provider.get(KID), rsa_key)
    assert time.monotonic() - started < 2.5
    assert second_server.requests == ["/" + KID] and key_server.requests == ["/" + KID]


def test_spent_total_deadline_skips_the_remaining_servers(key_server, second_server, settings):
    second_server.behaviour = "slow_body"
    _configure(
        settings,
        KEY_SERVERS=[second_server.url, key_server.url],
        KEY_FETCH_TIMEOUT=1.0,
        KEY_FETCH_SERVER_DEADLINE=1.0,
        KEY_FETCH_DEADLINE=1.0,
    )
    error, elapsed = _timed_get(KID, KeyServerUnavailable)
    assert "deadline" in error.detail
    assert key_server.requests == []  # no budget left: not asked
    assert elapsed < 2.0


def test_non_ascii_bytes_after_a_valid_pem_do_not_crash_the_fetch(
    key_server, second_server, rsa_key, settings
):
    second_server.keys[KID] = public_pem(rsa_key) + b"\n\xff\xfe trailing bytes\n"
    _configure(settings, KEY_SERVERS=[second_server.url, key_server.url])
    assert _same_key(provider.get(KID), rsa_key)
    row = InstallKey.objects.get(kid=KID)
    row.pem.encode("ascii")
    assert load_public_key(row.pem)[1] == _fingerprint(rsa_key)


# --- Negative cache and failure backoff -------------------------------------------------------


def test_unknown_kid_is_cached_briefly_in_the_shared_cache(key_server, rsa_key):
    kid = "not-yet-published"
    with pytest.raises(UnknownKid):
        provider.get(kid)
    assert key_server.requests == ["/" + kid]

    provider.clear()  # the negative entry is in the Django cache, shared by processes
    with pytest.raises(UnknownKid):
        provider.get(kid)
    assert key_server.requests == ["/" + kid]

    key_server.publish(kid, rsa_key)
    with pytest.raises(UnknownKid):
        provider.get(kid)
    assert key_server.requests == ["/" + kid]
    assert provider.fetch_count == 1

    cache.clear()
    assert _same_key(provider.get(kid), rsa_key)
    assert key_server.requests == ["/" + kid, "/" + kid]


def test_negative_ttl_zero_asks_again(key_server, settings):
    _configure(settings, KEY_NEGATIVE_TTL=0)
    key_server.behaviour = "not_found"
    for _ in range(2):
        with pytest.raises(UnknownKid):
            provider.get(KID)
    assert key_server.requests == ["/" + KID, "/" + KID]


def test_a_kid_that_failed_is_fetched_again_once_the_server_answers(key_server, rsa_key):
    """A kid's failure is not remembered: Jira's retry after the server recovers is accepted."""
    key_server.behaviour = "error"
    with pytest.raises(KeyServerUnavailable):
        provider.get(KID)
    key_server.behaviour = "normal"
    assert _same_key(provider.get(KID), rsa_key)  # at once, not after a backoff
    assert key_server.requests == ["/" + KID, "/" + KID]
    assert provider.fetch_count == 2


def test_failure_backoff_zero_asks_every_time(key_server, settings):
    _configure(settings, KEY_FAILURE_BACKOFF=0, KEY_SERVER_FAILURES=1)  # open after each failure
    key_server.behaviour = "error"
    for _ in range(2):
        with pytest.raises(KeyServerUnavailable):
            provider.get(KID)
    assert key_server.requests == ["/" + KID, "/" + KID]


# --- TTL and stale-if-error -------------------------------------------------------------------


def _fetch_then_expire(kid: str, age: timedelta) -> InstallKey:
    provider.get(kid)
    InstallKey.objects.filter(kid=kid).update(expires_at=timezone.now() - age)
    provider.clear()
    return InstallKey.objects.get(kid=kid)


def test_expired_row_is_fetched_again(key_server, rsa_key):
    expired = _fetch_then_expire(KID, timedelta(hours=1))
    assert _same_key(provider.get(KID), rsa_key)
    assert key_server.requests == ["/" + KID, "/" + KID]
    assert provider.fetch_count == 2
    row = InstallKey.objects.get(kid=KID)
    assert row.expires_at > timezone.now() > expired.expires_at
    assert InstallKey.objects.count() == 1


def test_expired_row_is_used_when_servers_fail_stale_if_error(key_server, rsa_key, caplog):
    expired = _fetch_then_expire(KID, timedelta(hours=1))
    key_server.behaviour = "error"
    with caplog.at_level(logging.WARNING, logger="lifecycle.keys"):
        key = provider.get(KID)
    assert _verifies(key, rsa_key)
    assert key_server.requests == ["/" + KID, "/" + KID]
    assert "stale-if-error" in caplog.text
    assert KID in caplog.text
    assert InstallKey.objects.get(kid=KID).expires_at == expired.expires_at  # not refreshed
    # Served from memory during the backoff: no further requests.
    assert _same_key(provider.get(KID), rsa_key)
    assert key_server.requests == ["/" + KID, "/" + KID]


def test_stale_if_error_is_bounded(key_server, settings):
    _configure(settings, KEY_STALE_IF_ERROR=3600)
    _fetch_then_expire(KID, timedelta(hours=2))
    key_server.behaviour = "error"
    with pytest.raises(KeyServerUnavailable):
        provider.get(KID)
    assert key_server.requests == ["/" + KID, "/" + KID]


def test_a_row_too_stale_to_use_is_not_a_reason_to_stop_asking(key_server, rsa_key, settings):
    _configure(settings, KEY_STALE_IF_ERROR=3600)
    _fetch_then_expire(KID, timedelta(hours=2))
    key_server.behaviour = "error"
    with pytest.raises(KeyServerUnavailable):
        provider.get(KID)
    key_server.behaviour = "normal"
    assert _same_key(provider.get(KID), rsa_key)
    assert key_server.requests == ["/" + KID] * 3  # the first fetch, the failed one, the good one


def test_stale_key_is_served_from_memory_during_the_backoff_without_asking_again(key_server, rsa_key):
    _fetch_then_expire(KID, timedelta(hours=1))
    key_server.behaviour = "error"
    assert _same_key(provider.get(KID), rsa_key)  # stale-if-error
    assert _same_key(provider.get(KID), rsa_key)  # remembered for KEY_FAILURE_BACKOFF
    assert key_server.requests == ["/" + KID, "/" + KID]
    assert provider.fetch_count == 2


def test_expired_row_that_servers_no_longer_know_is_deleted(key_server):
    _fetch_then_expire(KID, timedelta(hours=1))
    key_server.behaviour = "not_found"
    with pytest.raises(UnknownKid):
        provider.get(KID)
    assert not InstallKey.objects.filter(kid=KID).exists()
    assert key_server.requests == ["/" + KID, "/" + KID]


def test_a_valid_row_is_used_even_while_servers_are_down(key_server, rsa_key):
    provider.get(KID)
    provider.clear()
    key_server.behaviour = "hang"
    started = time.monotonic()
    assert _same_key(provider.get(KID), rsa_key)
    assert time.monotonic() - started < 0.5
    assert key_server.requests == ["/" + KID]


# --- Singleflight -----------------------------------------------------------------------------


@pytest.fixture
def slow_fetch(monkeypatch):
    """Make every fetch take 0.3 s longer, so that concurrent callers surely overlap."""
    real = keys_module.fetch_key
    active = {"now": 0, "max": 0}
    lock = threading.Lock()

    def slowed(kid, *args):
        with lock:
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
        try:
            time.sleep(0.3)
            return real(kid, *args)
        finally:
            with lock:
                active["now"] -= 1

    monkeypatch.setattr(keys_module, "fetch_key", slowed)
    return active


def _race(providers: list[KeyProvider], threads_each: int, kid: str) -> tuple[list, list]:
    barrier = threading.Barrier(len(providers) * threads_each)
    results: list = []
    errors: list = []

    def worker(target: KeyProvider):
        try:
            barrier.wait(timeout=10)
            results.append(target.get(kid))
        except Exception as exc:  # reported by the assertions below
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=worker, args=(target,)) for target in providers for _ in range(threads_each)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return results, errors


@pytest.mark.django_db(transaction=True)
def test_concurrent_gets_for_a_new_kid_fetch_once(key_server, rsa_key, slow_fetch):
    results, errors = _race([provider], 20, KID)
    assert errors == []
    assert len(results) == 20
    assert all(_same_key(key, rsa_key) for key in results)
    assert key_server.requests == ["/" + KID]
    assert provider.fetch_count == 1
    assert slow_fetch["max"] == 1
    assert InstallKey.objects.filter(kid=KID).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_processes_racing_store_one_row(key_server, rsa_key, slow_fetch):
    # Two providers stand for two worker processes sharing the database: at most one fetch each.
    first, second = KeyProvider(), KeyProvider()
    results, errors = _race([first, second], 10, KID)
    assert errors == []
    assert len(results) == 20
    assert all(_same_key(key, rsa_key) for key in results)
    assert first.fetch_count <= 1 and second.fetch_count <= 1
    assert 1 <= len(key_server.requests) <= 2
    assert set(key_server.requests) == {"/" + KID}
    assert InstallKey.objects.filter(kid=KID).count() == 1


# --- Bounded memory ---------------------------------------------------------------------------


def test_memory_is_a_bounded_lru(rsa_key):
    fresh = KeyProvider()
    key = rsa_key.public_key()
    for index in range(MEMORY_SIZE):
        fresh._remember(f"kid-{index}", key, 60)
    assert fresh._recall("kid-0") is key  # touched: now the most recent
    for index in range(MEMORY_SIZE, MEMORY_SIZE + 10):
        fresh._remember(f"kid-{index}", key, 60)
    assert len(fresh._memory) == MEMORY_SIZE
    assert "kid-0" in fresh._memory
    assert [f"kid-{index}" in fresh._memory for index in range(1, 12)] == [False] * 10 + [True]
    assert f"kid-{MEMORY_SIZE + 9}" in fresh._memory


def test_memory_entries_expire(rsa_key):
    fresh = KeyProvider()
    fresh._remember("short", rsa_key.public_key(), 0)
    assert fresh._recall("short") is None
    assert "short" not in fresh._memory


def test_provider_memory_stays_bounded_through_get(key_server, rsa_key, monkeypatch):
    monkeypatch.setattr(keys_module, "MEMORY_SIZE", 8)
    fresh = KeyProvider()
    for index in range(12):
        key_server.publish(f"kid-{index}", rsa_key)
        fresh.get(f"kid-{index}")
    assert len(fresh._memory) == 8
    assert sorted(fresh._memory) == sorted(f"kid-{index}" for index in range(4, 12))


# --- Logs -------------------------------------------------------------------------------------


def test_no_key_material_is_logged(key_server, second_server, rsa_key, settings, caplog):
    pem = public_pem(rsa_key).decode("ascii")
    body_lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    details = []
    with caplog.at_level(logging.DEBUG):
        provider.get(KID)  # fetched
        provider.clear()
        provider.get(KID)  # from the database
        key_server.publish("other", rsa_key)
        second_server.publish("other", rsa_key)
        second_server.behaviour = "html"
        _configure(settings, KEY_SERVERS=[second_server.url, key_server.url])
        provider.get("other")  # first server unusable, second fine
        key_server.behaviour = "oversize"
        second_server.behaviour = "error"
        for kid in ("third", "fourth"):
            with pytest.raises(KeyServerUnavailable) as caught:
                provider.get(kid)
            details.append(caught.value.detail)
        _fetch_then_expire(KID, timedelta(hours=1))
        assert _same_key(provider.get(KID), rsa_key)  # stale-if-error: both servers failing
        key_server.behaviour = "not_found"
        second_server.behaviour = "not_found"
        provider.clear()  # forget that both servers failed moments ago
        with pytest.raises(UnknownKid) as caught:
            provider.get("fifth")
        details.append(caught.value.detail)
    text = caplog.text + "\n".join(details)
    assert "stale-if-error" in caplog.text  # the sequence really exercised the logging paths
    assert "BEGIN PUBLIC KEY" not in text
    for line in body_lines:
        assert line not in text


def test_fetches_in_flight_are_capped_per_process(key_server, monkeypatch):
    from lifecycle import keys as keys_module

    gate = threading.Event()
    started = threading.Semaphore(0)

    def stuck(kid, *args):
        started.release()
        gate.wait(10)
        raise KeyServerUnavailable("down")

    monkeypatch.setattr(keys_module, "fetch_key", stuck)

    def fetch_and_fail(kid):
        with pytest.raises(KeyServerUnavailable):
            provider.fetch(kid)

    threads = [threading.Thread(target=fetch_and_fail, args=(k,)) for k in ("a", "b", "c", "d")]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert started.acquire(timeout=5)
    with pytest.raises(KeyServerUnavailable, match="already in progress"):
        provider.fetch("e")
    gate.set()
    for thread in threads:
        thread.join(5)


# --- One kid's answer never affects another kid; the server-wide breaker (issue 10, item 1) ---

NEW_KID = "prod/new-kid-1"


def test_a_403_for_one_kid_is_that_kids_unknown_kid_and_blocks_no_other(key_server, rsa_key):
    # Atlassian's key CDN answers 403 with a small page for an object it does not have.
    key_server.kid_behaviours["bogus-1"] = "forbidden"
    key_server.publish(NEW_KID, rsa_key)
    error, elapsed = _timed_get("bogus-1", UnknownKid)
    assert (error.status_code, error.code) == (401, "unknown_kid")
    assert elapsed < 1.0
    assert _same_key(provider.get(NEW_KID), rsa_key)  # at once, from the server
    assert key_server.requests == ["/bogus-1", "/" + NEW_KID]
    with pytest.raises(UnknownKid):  # negatively cached, for that kid only
        provider.get("bogus-1")
    assert key_server.requests == ["/bogus-1", "/" + NEW_KID]


@pytest.mark.parametrize(
    "answer", ["forbidden", "not_found", "html", "oversize", "redirect", "weak_key", "error", "slow_body"]
)
def test_an_answer_about_one_kid_never_affects_another(key_server, rsa_key, small_rsa_key, settings, answer):
    _configure(settings, **SLOW_LIMITS)
    if answer == "weak_key":
        key_server.keys["bogus-1"] = public_pem(small_rsa_key)
    else:
        key_server.kid_behaviours["bogus-1"] = answer
    with pytest.raises((UnknownKid, KeyServerUnavailable)):
        provider.get("bogus-1")
    key_server.publish(NEW_KID, rsa_key)
    started = time.monotonic()
    assert _same_key(provider.get(NEW_KID), rsa_key)
    assert time.monotonic() - started < 0.5
    assert key_server.requests == ["/bogus-1", "/" + NEW_KID]


def test_answers_about_kids_never_open_the_breaker(key_server, rsa_key):
    for index in range(10):  # 4xx, HTML and oversized answers say nothing about the server
        kid = f"bogus-{index}"
        key_server.kid_behaviours[kid] = ("forbidden", "html", "oversize", "redirect", "not_found")[index % 5]
        with pytest.raises((UnknownKid, KeyServerUnavailable)):
            provider.get(kid)
    key_server.publish(NEW_KID, rsa_key)
    assert _same_key(provider.get(NEW_KID), rsa_key)
    assert key_server.requests[-1] == "/" + NEW_KID
    assert len(key_server.requests) == 11


def test_the_breaker_opens_after_several_consecutive_5xx_then_lets_one_probe_through(
    key_server, rsa_key, settings
):
    _configure(settings, KEY_SERVER_FAILURES=3, KEY_FAILURE_BACKOFF=0.5)
    key_server.behaviour = "error"
    for index in range(2):  # fewer than KEY_SERVER_FAILURES: still asked every time
        with pytest.raises(KeyServerUnavailable):
            provider.get(f"kid-{index}")
    with pytest.raises(KeyServerUnavailable):
        provider.get("kid-2")  # the third in a row: opens
    error, elapsed = _timed_get("kid-3", KeyServerUnavailable)
    assert "not asked, down on its last 3 tries" in error.detail
    assert elapsed < 0.2
    assert key_server.requests == ["/kid-0", "/kid-1", "/kid-2"]

    time.sleep(0.6)  # the backoff is over: one probe, and it fails: open again
    with pytest.raises(KeyServerUnavailable):
        provider.get("kid-4")
    with pytest.raises(KeyServerUnavailable, match="not asked"):
        provider.get("kid-5")
    assert key_server.requests[-1] == "/kid-4"

    key_server.behaviour = "normal"
    key_server.publish("kid-6", rsa_key)
    time.sleep(0.6)
    assert _same_key(provider.get("kid-6"), rsa_key)  # the probe succeeds: closed
    key_server.publish("kid-7", rsa_key)
    assert _same_key(provider.get("kid-7"), rsa_key)
    assert key_server.requests[-2:] == ["/kid-6", "/kid-7"]


def test_the_breaker_counts_transport_failures(key_server, settings):
    url = f"http://127.0.0.1:{_free_port()}"
    _configure(settings, KEY_SERVERS=[url], KEY_SERVER_FAILURES=2)
    for kid in ("kid-0", "kid-1"):
        with pytest.raises(KeyServerUnavailable, match="curl error 7"):
            provider.get(kid)
    with pytest.raises(KeyServerUnavailable, match="not asked"):
        provider.get("kid-2")


@pytest.mark.django_db(transaction=True)
def test_only_one_probe_goes_through_when_half_open(key_server, rsa_key, settings):
    _configure(settings, KEY_SERVER_FAILURES=1, KEY_FAILURE_BACKOFF=0.3, **SLOW_LIMITS)
    key_server.behaviour = "error"
    with pytest.raises(KeyServerUnavailable):
        provider.get("kid-0")
    time.sleep(0.4)
    key_server.behaviour = "slow_body"  # the probe takes a while; others arrive meanwhile
    kids = [f"kid-{index}" for index in range(1, 6)]
    results = {}

    def get(kid):
        try:
            results[kid] = provider.get(kid)
        except KeyServerUnavailable as exc:
            results[kid] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=get, args=(kid,)) for kid in kids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(key_server.requests) == 2  # kid-0, then exactly one probe
    assert all(isinstance(result, KeyServerUnavailable) for result in results.values())


def test_one_failing_server_costs_a_genuine_install_only_the_fallback(
    key_server, second_server, rsa_key, settings
):
    """Both production servers configured, the first one down: every genuine kid still works."""
    second_server.behaviour = "error"
    _configure(settings, KEY_SERVERS=[second_server.url, key_server.url], KEY_SERVER_FAILURES=3)
    for index in range(8):
        key_server.publish(f"prod/kid-{index}", rsa_key)
        started = time.monotonic()
        assert _same_key(provider.get(f"prod/kid-{index}"), rsa_key)
        assert time.monotonic() - started < 0.5
    assert len(key_server.requests) == 8
    assert len(second_server.requests) == 3  # then skipped while open


def test_forbidden_from_one_server_and_404_from_the_other_is_unknown_kid(key_server, second_server, settings):
    key_server.behaviour = "forbidden"
    second_server.behaviour = "not_found"
    _configure(settings, KEY_SERVERS=[key_server.url, second_server.url])
    error, _ = _timed_get("bogus-1", UnknownKid)
    assert key_server.url in error.detail and second_server.url in error.detail


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_share_one_failed_fetch_and_remember_nothing(key_server, rsa_key, slow_fetch):
    key_server.behaviour = "error"
    results, errors = _race([provider], 10, KID)
    assert results == []
    assert len(errors) == 10 and all(isinstance(error, KeyServerUnavailable) for error in errors)
    assert key_server.requests == ["/" + KID]  # one fetch for all ten
    key_server.behaviour = "normal"
    assert _same_key(provider.get(KID), rsa_key)  # and nothing remembered afterwards
    assert key_server.requests == ["/" + KID, "/" + KID]


def test_a_failing_probe_of_a_closed_server_is_not_counted_twice(key_server, settings):
    breaker = keys_module.ServerBreaker()
    _configure(settings, KEY_SERVER_FAILURES=2, KEY_FAILURE_BACKOFF=60)
    breaker.record("s", up=False)
    assert breaker.allow("s")
    breaker.record("s", up=True)  # an answer resets the count
    breaker.record("s", up=False)
    assert breaker.allow("s")
    breaker.record("s", up=False)
    assert not breaker.allow("s")


def test_410_gone_is_not_published(key_server):
    key_server.kid_behaviours["retired"] = "gone"
    error, _ = _timed_get("retired", UnknownKid)
    assert error.code == "unknown_kid"


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
def test_a_large_5xx_outage_page_counts_as_the_server_being_down(key_server, settings, declared):
    page = b"<html>" + b"x" * 40000 + b"</html>"
    length = f"Content-Length: {len(page)}\r\n".encode() if declared else b""
    response = b"HTTP/1.1 503 Service Unavailable\r\n" + length + b"Connection: close\r\n\r\n" + page
    with _raw_server(response) as url:
        _configure(settings, KEY_SERVERS=[url], KEY_SERVER_FAILURES=1)
        error, _ = _timed_get(KID, KeyServerUnavailable)
        assert "HTTP 503" in error.detail
        with pytest.raises(KeyServerUnavailable, match="not asked, down"):
            provider.get("another-kid")  # the breaker counted it


def test_an_unknown_algorithm_pem_is_an_unusable_answer_not_a_500(
    key_server, rsa_key, second_server, settings
):
    second_server.keys[KID] = b"-----BEGIN PUBLIC KEY-----\nMA0wBQYDKgMEAwQAAQL/\n-----END PUBLIC KEY-----\n"
    _configure(settings, KEY_SERVERS=[second_server.url, key_server.url])
    assert _same_key(provider.get(KID), rsa_key)  # the next server serves it


def test_a_timeout_on_what_is_left_of_the_budget_is_no_verdict_on_the_server(
    key_server, second_server, settings
):
    second_server.behaviour = "hang"
    key_server.behaviour = "hang"
    _configure(
        settings,
        KEY_SERVERS=[second_server.url, key_server.url],
        KEY_FETCH_TIMEOUT=1.0,
        KEY_FETCH_SERVER_DEADLINE=1.0,
        KEY_FETCH_DEADLINE=1.5,
        KEY_SERVER_FAILURES=1,
    )
    with pytest.raises(KeyServerUnavailable):
        provider.get(KID)  # the first server used its full second: counted; the second had 0.5 s
    assert provider._breaker.allow(second_server.url) is None
    assert provider._breaker.allow(key_server.url) == "call"


# --- Fetches of new kids are limited per source and in all (issue 12, item 4) -----------------


def test_new_kid_fetches_are_limited_per_source_then_refused_fast(key_server, rsa_key, settings):
    from lifecycle.errors import KeyFetchRateLimited

    _configure(settings, KEY_FETCH_RATE_PER_SOURCE="3/m", KEY_FETCH_RATE="100/m")
    key_server.behaviour = "not_found"
    for index in range(3):
        with pytest.raises(UnknownKid):
            provider.get(f"random-{index}", source="203.0.113.9")
    started = time.monotonic()
    with pytest.raises(KeyFetchRateLimited) as caught:
        provider.get("random-3", source="203.0.113.9")
    assert time.monotonic() - started < 0.2
    assert (caught.value.status_code, caught.value.code) == (503, "key_fetch_rate_limited")
    assert 1 <= caught.value.retry_after <= 60
    assert len(key_server.requests) == 3  # the fourth never reached a key server
    key_server.behaviour = "normal"
    assert _same_key(provider.get(KID, source="198.51.100.7"), rsa_key)  # another source still fetches


def test_the_global_limit_holds_across_sources(key_server, settings):
    from lifecycle.errors import KeyFetchRateLimited

    _configure(settings, KEY_FETCH_RATE_PER_SOURCE="100/m", KEY_FETCH_RATE="4/m")
    key_server.behaviour = "not_found"
    for index in range(4):
        with pytest.raises(UnknownKid):
            provider.get(f"spread-{index}", source=f"203.0.113.{index}")
    with pytest.raises(KeyFetchRateLimited):
        provider.get("spread-4", source="203.0.113.99")
    assert len(key_server.requests) == 4


def test_cached_and_stored_kids_never_count_against_the_limit(key_server, rsa_key, settings):
    _configure(settings, KEY_FETCH_RATE_PER_SOURCE="1/m", KEY_FETCH_RATE="1/m")
    provider.get(KID, source="203.0.113.9")  # the one fetch
    for _ in range(5):
        assert _same_key(provider.get(KID, source="203.0.113.9"), rsa_key)  # memory
    provider.clear()
    assert _same_key(provider.get(KID, source="203.0.113.9"), rsa_key)  # the database
    assert key_server.requests == ["/" + KID]
