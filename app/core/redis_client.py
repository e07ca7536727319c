"""Redis clients with short timeouts (redis-py defaults can hang forever), Flask-free.

`build_client` makes the pooled client every process shares (the Flask side keeps it in
`app.extensions`: app/core/redis.py); it follows a Sentinel failover
(app/settings/redis_url.py). The request path's commands go through a connection per
thread instead (`ThreadCommands`, app/hotstore/commands.py).
"""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.settings import Settings


def build_client(settings: Settings) -> redis.Redis:
    """A pooled client: bounded connect/socket timeouts, one quick retry, no backoff.

    redis/redis-py#2243: without socket_timeout a dead server can block a worker
    forever; redis-py's default retry policy would also multiply the wait.
    """
    return settings.redis_client(
        settings.redis_url,
        socket_timeout=settings.redis_socket_timeout,
        socket_connect_timeout=settings.redis_connect_timeout,
        health_check_interval=15,
        retry=Retry(NoBackoff(), 1),
        max_connections=64,
        decode_responses=False,
    )
