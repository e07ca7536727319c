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
from typing import Final, cast

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from app.core.redis_client import ThreadCommands
from app.settings.redis_url import connect

log = logging.getLogger("structured_api.ratelimit")

SCRIPT: Final = resources.files("app.ratelimit").joinpath("gcra.lua").read_text()
SCRIPT_SHA: Final = hashlib.sha1(SCRIPT.encode()).hexdigest()  # Redis names scripts by SHA-1

Row = tuple[int, int, int, int]  # conforms, remaining, ms until whole, ms until it conforms


class StoreUnavailable(Exception):
    """Redis could not answer in time (or is in its cooldown after a failure)."""


def build_client(url: str, *, timeout: float, sentinel_password: str | None = None) -> redis.Redis:
    """A client with `timeout` for connect and reads; one immediate retry on a dropped socket.

    The single retry covers pooled connections a restarted Redis closed; it is limited to
    connection errors so a slow Redis costs one timeout, not two. `redis+sentinel://` URLs
    work too (app/settings/redis_url.py).
    """
    return connect(
        url,
        sentinel_password=sentinel_password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        max_connections=128,
        decode_responses=False,
    )


class LimiterStore:
    """Runs the GCRA script; raises `StoreUnavailable` instead of waiting on a dead Redis.

    Script calls run on a connection owned by the calling thread (`ThreadCommands`), not
    one borrowed from `client`'s pool per call: this is the one Redis call every request
    makes.
    """

    def __init__(self, client: redis.Redis, *, cooldown: float = 0.5) -> None:
        self.client = client
        self.cooldown = cooldown
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._command = ThreadCommands(client)

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
        rows, _ = self.evaluate_gated(keys, args, shadow_keys=shadow_keys, shadow_ttl=shadow_ttl)
        assert rows is not None
        return rows

    def evaluate_gated(
        self,
        keys: Sequence[str],
        args: Sequence[float | int],
        *,
        shadow_keys: Sequence[str] = (),
        shadow_ttl: int = 3900,
        gates: Sequence[str] = (),
    ) -> tuple[list[Row] | None, list[bytes | None]]:
        """Like `evaluate`, reading `gates` first: (None, values) when one exists."""
        if not self.healthy:
            raise StoreUnavailable("rate-limit store in cooldown after a failure")
        all_keys = [*keys, *shadow_keys, *gates]
        argv = (len(keys), shadow_ttl, len(gates), *args)
        try:
            try:
                raw = self._command("EVALSHA", SCRIPT_SHA, len(all_keys), *all_keys, *argv)
            except NoScriptError:
                # A restarted (or flushed) Redis forgot the script: EVAL loads it again.
                raw = self._command("EVAL", SCRIPT, len(all_keys), *all_keys, *argv)
        except RedisError as exc:
            self._trip()
            log.warning("rate-limit store unavailable: %s", type(exc).__name__)
            raise StoreUnavailable(str(exc)) from exc
        values, rows = cast(tuple[list[bytes], list[list[int]]], raw)
        gate_values: list[bytes | None] = [v or None for v in values]
        if any(v is not None for v in gate_values):
            return None, gate_values
        return [(int(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows], gate_values

    def run_script(
        self, source: str, sha: str, keys: Sequence[str], args: Sequence[str | int | float]
    ) -> object:
        """Run another Lua script (EVALSHA, EVAL when Redis forgot it) with the same timeout,
        cooldown and `StoreUnavailable` as the limiter's own (app/ai/concurrency.py)."""
        if not self.healthy:
            raise StoreUnavailable("rate-limit store in cooldown after a failure")
        try:
            try:
                return self._command("EVALSHA", sha, len(keys), *keys, *args)
            except NoScriptError:
                return self._command("EVAL", source, len(keys), *keys, *args)
        except RedisError as exc:
            self._trip()
            log.warning("rate-limit store unavailable: %s", type(exc).__name__)
            raise StoreUnavailable(str(exc)) from exc

    def read(self, keys: Sequence[str]) -> list[bytes | None]:
        """Plain MGET (gates of a request nothing limits)."""
        if not self.healthy:
            raise StoreUnavailable("rate-limit store in cooldown after a failure")
        try:
            values = cast(list[bytes | None], self._command("MGET", *keys))
        except RedisError as exc:
            self._trip()
            raise StoreUnavailable(str(exc)) from exc
        return values

    def _trip(self) -> None:
        with self._lock:
            self._down_until = time.monotonic() + self.cooldown
