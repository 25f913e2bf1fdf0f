"""connectsite.cache: Django's Redis cache, one redis-py client per connection pool."""

from __future__ import annotations

import pytest

from connectsite.cache import RedisCache
from tests.conftest import redis_up

pytestmark = pytest.mark.skipif(not redis_up(), reason="needs Redis on 127.0.0.1:6379 (.ci/run starts it)")


def test_one_client_per_pool_and_the_cache_works():
    cache = RedisCache("redis://127.0.0.1:6379/14", {"KEY_PREFIX": "connect-cache-test"})
    try:
        first = cache._cache.get_client(write=True)
        assert cache._cache.get_client(write=True) is first  # Django's own made a new one each call
        assert cache.add("k", {"v": 1}, 30) is True
        assert cache.add("k", {"v": 2}, 30) is False
        assert cache.get("k") == {"v": 1}
        cache.delete("k")
        assert cache.get("k") is None
    finally:
        cache.delete("k")


def test_add_or_get_stores_once_then_answers_what_is_stored():
    cache = RedisCache("redis://127.0.0.1:6379/14", {"KEY_PREFIX": "connect-cache-test"})
    try:
        assert cache.add_or_get("once", "digest-a", 30) is None  # stored now
        assert cache.add_or_get("once", "digest-b", 30) == "digest-a"  # kept, not overwritten
        assert cache.get("once") == "digest-a"
        assert 0 < cache._cache.get_client().ttl(cache.make_key("once")) <= 30
    finally:
        cache.delete("once")


def test_add_or_get_on_a_redis_without_set_nx_get_falls_back_to_two_commands(monkeypatch):
    """Redis before 7.0 answers SET ... NX GET with a syntax error: add, then get."""
    import redis

    cache = RedisCache("redis://127.0.0.1:6379/14", {"KEY_PREFIX": "connect-cache-test"})
    client = cache._cache.get_client(write=True)
    real_set = client.set

    def old_server_set(*args, **kwargs):
        if kwargs.get("nx") and kwargs.get("get"):
            raise redis.ResponseError("syntax error")
        return real_set(*args, **kwargs)

    monkeypatch.setattr(client, "set", old_server_set)
    try:
        assert cache.add_or_get("old", "digest-a", 30) is None
        assert cache.add_or_get("old", "digest-b", 30) == "digest-a"
        assert cache._cache._nx_get is False
    finally:
        cache.delete("old")
