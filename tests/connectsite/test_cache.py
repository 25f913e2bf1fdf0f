"""connectsite.cache: Django's Redis cache, one redis-py client per connection pool."""

from __future__ import annotations

import socket

import pytest

from connectsite.cache import RedisCache


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _redis_up(), reason="needs Redis on 127.0.0.1:6379 (.ci/run starts it)")


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
