"""Django's Redis cache backend, keeping one Redis client per connection pool.

Django 5.2's ``RedisCacheClient.get_client`` builds a new ``redis.Redis`` for every cache call.
With redis-py 8 that object costs more than the call itself: its constructor fills a table of
about 170 response callbacks, 152 µs of CPU against 79 µs for a ``GET`` round trip on loopback,
so a ``cache.get`` took 265 µs. The client is thread-safe (it takes a connection from the pool
for each command), so one per pool is kept, as Django keeps the pools themselves.

:meth:`RedisCache.add_or_get` is ``add`` and, when the key was there, ``get``, in one command
(``SET key value NX GET EX ttl``, Redis 7.0 and later): the replay guard of a retried signed
install makes one round trip, not two (two on a Redis older than 7.0).
"""

from __future__ import annotations

from typing import Any

import redis
from django.core.cache.backends import redis as django_redis


class RedisCacheClient(django_redis.RedisCacheClient):
    """``RedisCacheClient`` whose ``get_client`` returns the same ``redis.Redis`` for a pool."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}
        self._nx_get = True  # the server takes SET ... NX GET (Redis 7.0+)

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients.setdefault(id(pool), self._client(connection_pool=pool))
        return client

    def add_or_get(self, key: Any, value: Any, timeout: int) -> Any:
        """Store ``value`` under ``key`` for ``timeout`` seconds unless the key exists; return
        ``None`` when stored, else the value already there (Redis ``SET NX GET``, 7.0+)."""
        client = self.get_client(key, write=True)
        dumped = self._serializer.dumps(value)
        if self._nx_get:
            try:
                old = client.set(key, dumped, ex=timeout, nx=True, get=True)
                return None if old is None else self._serializer.loads(old)
            except redis.ResponseError:  # Redis before 7.0: "syntax error"; two commands from now on
                self._nx_get = False
        if client.set(key, dumped, ex=timeout, nx=True):
            return None
        old = client.get(key)
        return None if old is None else self._serializer.loads(old)


class RedisCache(django_redis.RedisCache):
    """``django.core.cache.backends.redis.RedisCache`` with :class:`RedisCacheClient`; set by
    ``connectsite/settings.py`` for a ``redis://`` ``CACHE_URL``."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient

    def add_or_get(self, key: str, value: Any, timeout: int, version: int | None = None) -> Any:
        """``add(key, value, timeout)``; when the key already existed, its value instead of
        ``False``: ``None`` means stored now. One Redis command; ``timeout`` in seconds, >= 1.
        Raises redis-py's errors (``redis.ConnectionError``...) as ``add`` does."""
        key = self.make_and_validate_key(key, version=version)
        return self._cache.add_or_get(key, value, max(1, int(timeout)))
