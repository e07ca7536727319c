"""The limiter's own Redis client and its one script, with a short-circuit when Redis is down.

The limiter does not share the app's Redis client: it needs a much shorter socket
timeout (`RATE_LIMIT_REDIS_TIMEOUT`, ~0.2 s; redis/redis-py#2243 is what no timeout
costs) so a dead Redis turns into a fast fail-open/fail-closed decision, not a hung
worker. After a failure the store refuses calls for `cooldown` seconds instead of paying
the timeout on every request, then tries Redis again: limits come back by themselves.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from importlib import resources
from typing import Final

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

log = logging.getLogger("structured_api.ratelimit")

SCRIPT: Final = resources.files("app.core.ratelimit").joinpath("gcra.lua").read_text()
SCRIPT_SHA: Final = hashlib.sha1(SCRIPT.encode()).hexdigest()  # Redis names scripts by SHA-1

Row = tuple[int, int, int, int]  # conforms, remaining, ms until whole, ms until it conforms


class StoreUnavailable(Exception):
    """Redis could not answer in time (or is in its cooldown after a failure)."""


def build_client(url: str, *, timeout: float) -> redis.Redis:
    """A client with `timeout` for connect and reads; one immediate retry on a dropped socket.

    The single retry covers pooled connections a restarted Redis closed; it is limited to
    connection errors so a slow Redis costs one timeout, not two.
    """
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        max_connections=128,
        decode_responses=False,
    )


class LimiterStore:
    """Runs the GCRA script; raises `StoreUnavailable` instead of waiting on a dead Redis."""

    def __init__(self, client: redis.Redis, *, cooldown: float = 0.5) -> None:
        self.client = client
        self.cooldown = cooldown
        self._down_until = 0.0
        self._lock = threading.Lock()

    @property
    def healthy(self) -> bool:
        """False during the cooldown after a failure."""
        return time.monotonic() >= self._down_until

    def evaluate(
        self,
        keys: Sequence[str],
        args: Sequence[float | int],
        *,
        shadow_keys: Sequence[str] = (),
        shadow_ttl: int = 3900,
    ) -> list[Row]:
        """Run the script over `keys` (5 `args` per key) in one round trip."""
        if not self.healthy:
            raise StoreUnavailable("rate-limit store in cooldown after a failure")
        n = len(keys)
        argv = (n, shadow_ttl, *args)
        try:
            try:
                raw = self.client.evalsha(
                    SCRIPT_SHA, n + len(shadow_keys), *keys, *shadow_keys, *argv
                )
            except NoScriptError:
                # A restarted (or flushed) Redis forgot the script: EVAL loads it again.
                raw = self.client.eval(SCRIPT, n + len(shadow_keys), *keys, *shadow_keys, *argv)
        except RedisError as exc:
            with self._lock:
                self._down_until = time.monotonic() + self.cooldown
            log.warning("rate-limit store unavailable: %s", type(exc).__name__)
            raise StoreUnavailable(str(exc)) from exc
        return [(int(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in raw]  # type: ignore[union-attr]
