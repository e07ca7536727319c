"""The shared Redis client with short timeouts (redis-py defaults can hang forever)."""

from __future__ import annotations

from typing import Final

import redis
from flask import Flask, current_app
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.config import Settings

EXTENSION: Final = "redis"


def build_client(settings: Settings) -> redis.Redis:
    """A pooled client: bounded connect/socket timeouts, one quick retry, no backoff.

    redis/redis-py#2243: without socket_timeout a dead server can block a worker
    forever; redis-py's default retry policy would also multiply the wait.
    """
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_socket_timeout,
        socket_connect_timeout=settings.redis_connect_timeout,
        health_check_interval=15,
        retry=Retry(NoBackoff(), 1),
        max_connections=64,
        decode_responses=False,
    )


def init_app(app: Flask, settings: Settings) -> None:
    """Create the client; it connects lazily on first use."""
    app.extensions[EXTENSION] = build_client(settings)


def client() -> redis.Redis:
    """The current app's Redis client."""
    c: redis.Redis = current_app.extensions[EXTENSION]
    return c


def reset_after_fork(app: Flask) -> None:
    """Forget connections inherited from a parent process."""
    c: redis.Redis | None = app.extensions.get(EXTENSION)
    if c is not None:
        c.connection_pool.reset()
