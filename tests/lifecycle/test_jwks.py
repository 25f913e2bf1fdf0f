"""lifecycle.jwks: the Forge JWKS fetched over real HTTP from the loopback key server."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from django.core.cache import cache

from connect_testkit import generate_rsa_key, public_jwk
from lifecycle import jwks
from lifecycle.errors import ForgeJwksUnavailable, ForgeUnknownKid
from tests.conftest import FORGE_KID


def test_parse_keeps_only_rsa_signing_keys_for_rs256(rsa_key):
    good = public_jwk(rsa_key, "good")
    weak = public_jwk(generate_rsa_key(1024), "weak")
    document = {
        "keys": [
            good,
            {**public_jwk(rsa_key, "enc"), "use": "enc"},
            {**public_jwk(rsa_key, "ps"), "alg": "PS256"},
            weak,
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {**public_jwk(rsa_key, "no-kid"), "kid": None},
            "junk",
        ]
    }
    assert set(jwks.parse_jwks(json.dumps(document).encode())) == {"good"}
    no_alg = {k: v for k, v in good.items() if k not in ("alg", "use")}
    assert set(jwks.parse_jwks(json.dumps({"keys": [no_alg]}).encode())) == {"good"}


@pytest.mark.parametrize(
    "data", [b"<html>Sign in</html>", b"[]", b'{"keys": []}', b'{"keys": "x"}', b'{"keys": [{"kty": "oct"}]}']
)
def test_parse_refuses_what_holds_no_usable_key(data):
    with pytest.raises(jwks.JwksUnusable):
        jwks.parse_jwks(data)


def test_one_fetch_serves_every_kid_until_the_ttl(forge, rsa_key):
    assert jwks.provider.get(FORGE_KID).public_numbers() == rsa_key.public_key().public_numbers()
    jwks.provider.clear()  # another process: it reads the shared copy, not the URL
    jwks.provider.get(FORGE_KID)
    assert len(forge.server.requests) == 1


def test_concurrent_first_calls_fetch_once(forge):
    results, barrier = [], threading.Barrier(8)

    def call():
        barrier.wait()
        try:
            results.append(jwks.provider.get(FORGE_KID) is not None)
        except Exception as exc:  # pragma: no cover - shown by the assertion
            results.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 8
    assert len(forge.server.requests) == 1


def test_an_unknown_kid_refetches_at_most_once_per_interval(forge):
    jwks.provider.get(FORGE_KID)
    for _ in range(10):
        with pytest.raises(ForgeUnknownKid):
            jwks.provider.get("forge/invocation-token/wf-" + str(uuid.uuid4()))
    assert len(forge.server.requests) == 2  # the first fetch, one refetch
    jwks.provider.clear()  # another process: the interval is shared through the cache
    with pytest.raises(ForgeUnknownKid):
        jwks.provider.get("forge/invocation-token/wf-" + str(uuid.uuid4()))
    assert len(forge.server.requests) == 2


def test_a_jwks_url_that_hangs_costs_one_deadline_then_backs_off(forge, settings):
    settings.CONNECT = {**settings.CONNECT, "FORGE_JWKS_FETCH_DEADLINE": 0.5}
    forge.server.behaviour = "hang"
    with pytest.raises(ForgeJwksUnavailable):
        jwks.provider.get(FORGE_KID)
    with pytest.raises(ForgeJwksUnavailable):
        jwks.provider.get(FORGE_KID)
    assert len(forge.server.requests) == 1  # the second call did not ask again (FAILURE_BACKOFF)
    cache.delete(jwks.cache_key("failed"))
    jwks.provider.clear()  # and this process's own backoff
    forge.server.behaviour = "normal"
    assert jwks.provider.get(FORGE_KID) is not None


def test_a_cache_outage_does_not_make_every_call_a_fetch(forge, settings):
    """The shared failure mark and lock live in the cache: without it, each process backs off."""
    settings.CONNECT = {**settings.CONNECT, "FORGE_JWKS_FETCH_DEADLINE": 0.5}
    working = settings.CACHES
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:9/0"}}  # fmt: skip
    try:
        forge.server.behaviour = "error"
        for _ in range(5):
            with pytest.raises(ForgeJwksUnavailable):
                jwks.provider.get(FORGE_KID)
        assert len(forge.server.requests) == 1
    finally:
        settings.CACHES = working


def test_the_shared_copy_belongs_to_its_url(forge, settings, rsa_key):
    """A server trusting another JWKS URL on the same cache never uses this one's keys."""
    jwks.provider.get(FORGE_KID)
    other = generate_rsa_key()
    from connect_testkit import KeyServer

    with KeyServer() as elsewhere:
        elsewhere.publish_jwk("forge/invocation-token/wf-other", other)
        settings.CONNECT = {**settings.CONNECT, "FORGE_JWKS_URL": elsewhere.jwks_url}
        jwks.provider.clear()
        with pytest.raises(ForgeUnknownKid):
            jwks.provider.get(FORGE_KID)
        assert jwks.provider.get("forge/invocation-token/wf-other") is not None
