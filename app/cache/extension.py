"""Redis response cache: `@cached` GET views, `@invalidates` writes, `get_or_set` for services.

See docs/caching.md. Nothing here can fail a request: when Redis is unreachable the
value is computed as if there were no cache.
"""

from __future__ import annotations

from flask import Flask

from app.cache.service import (
    EXTENSION,
    Cache,
    CacheConfig,
)
from app.cache.store import CacheStore
from app.hotstore.client import hot_client
from app.settings import Settings


def init_app(app: Flask, settings: Settings) -> Cache:
    """Create the cache with its own short-timeout Redis client (connects lazily).

    The hot store's client (app/hotstore/): the Redis Cluster when one is configured."""
    client = hot_client(settings, timeout=settings.cache_redis_timeout)
    cache = Cache(CacheStore(client), CacheConfig(enabled=settings.cache_enabled))
    app.extensions[EXTENSION] = cache
    return cache
