"""The app's shared Redis client (app/core/redis_client.py builds it) in `app.extensions`."""

from __future__ import annotations

from typing import Final

import redis
from flask import Flask, current_app

from app.core.redis_client import build_client
from app.settings import Settings

EXTENSION: Final = "redis"


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
