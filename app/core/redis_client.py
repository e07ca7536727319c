"""Redis clients with short timeouts (redis-py defaults can hang forever), Flask-free.

`build_client` makes the pooled client every process shares (the Flask side keeps it in
`app.extensions`: app/core/redis.py); `ThreadCommands` gives a hot path its own
connection per thread; both follow a Sentinel failover (app/settings/redis_url.py).
"""

from __future__ import annotations

import os
import threading

import redis
from redis.backoff import NoBackoff
from redis.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
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


class _ThreadConnections(threading.local):
    """One connection per thread: (pid, connection), re-made after a fork."""

    pid: int = -1
    connection: Connection | None = None


class ThreadCommands:
    """Commands on a connection owned by the calling thread, not borrowed from a pool.

    For the few commands on the request path (the rate-limit script, the AI history
    push): redis-py 7's pool checkout, retry wrapper and observability hooks cost about
    70 us of CPU per command here (bench/, docs/performance.md), more than the command
    itself. The connection has `client`'s settings (timeouts, address); like
    `build_client`'s retry there is one more attempt on a fresh connection after a
    connection error (a socket a restarted Redis closed), none after a timeout. Any other
    error drops the connection, so a reply left unread by a timeout can never be read as
    the answer to the next command (what the pool guards against).
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._local = _ThreadConnections()

    def _connection(self) -> Connection:
        local = self._local
        conn = local.connection
        if conn is None or local.pid != os.getpid():
            pool = self.client.connection_pool
            conn = local.connection = pool.connection_class(**pool.connection_kwargs)
            local.pid = os.getpid()
        return conn

    def _drop(self, conn: Connection) -> None:
        self._local.connection = None
        conn.disconnect()  # type: ignore[no-untyped-call]

    def __call__(self, *args: str | int | float | bytes) -> object:
        """Send one command on this thread's connection and read its reply."""
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.connect()  # type: ignore[no-untyped-call]  # Sentinel: finds the master
                conn.send_command(*args)  # type: ignore[no-untyped-call]
                return conn.read_response()  # type: ignore[no-untyped-call]
            except ResponseError:
                raise  # a whole error reply was read (NOSCRIPT, a script error): link fine
            except RedisConnectionError:
                self._drop(conn)
                if attempt == 2:
                    raise
            except BaseException:
                self._drop(conn)
                raise
        raise AssertionError("unreachable")
