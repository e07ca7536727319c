"""Commands on a Redis connection owned by the calling thread: the request path's client.

    commands = ThreadCommands(client)            # client: a redis.Redis (its settings)
    commands("EVALSHA", sha, 1, key, arg)        # one command, one round trip
    commands.pipeline(("RPUSH", k, v), ("ZREM", s, m))   # several, still one round trip

redis-py 7's pool checkout, retry wrapper and observability hooks cost about 70 us of CPU
per command here (bench/, docs/performance.md), more than a short command itself; the
rate limiter, the hot store (app/hotstore/client.py) and the AI history journal send their
request-path commands this way. The connection follows a Sentinel failover like the
client it was made from (app/settings/redis_url.py).
"""

from __future__ import annotations

import os
import threading

import redis
from redis.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

Command = tuple[str | int | float | bytes, ...]


class _ThreadConnections(threading.local):
    """One connection per thread: (pid, connection), re-made after a fork."""

    pid: int = -1
    connection: Connection | None = None


class ThreadCommands:
    """Commands on a connection owned by the calling thread, not borrowed from a pool.

    The connection has `client`'s settings (timeouts, address); like
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
        """Send one command on this thread's connection and read its reply (an error
        reply raised: NOSCRIPT, a script error; the connection stays usable)."""
        reply = self.pipeline(args)[0]
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    def pipeline(self, *commands: Command) -> list[object]:
        """Send `commands` in one write and read their replies in order, one round trip.

        Not a transaction: each command runs on its own. An error reply comes back as the
        `ResponseError` in its place (the others are still read, so the connection stays in
        step); connection errors are retried once on a fresh connection, which may run a
        command twice: only idempotent commands, or ones whose repeat is harmless, belong
        here.
        """
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.connect()  # type: ignore[no-untyped-call]  # Sentinel: finds the master
                conn.send_packed_command(conn.pack_commands(commands))  # type: ignore[no-untyped-call]
                replies: list[object] = []
                for _ in commands:
                    try:
                        replies.append(conn.read_response())  # type: ignore[no-untyped-call]
                    except ResponseError as exc:  # a whole error reply was read
                        replies.append(exc)
                return replies
            except RedisConnectionError:
                self._drop(conn)
                if attempt == 2:
                    raise
            except BaseException:
                self._drop(conn)
                raise
        raise AssertionError("unreachable")
