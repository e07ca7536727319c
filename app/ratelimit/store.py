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
from typing import Any, Final, cast

import redis
from redis.exceptions import NoScriptError, RedisError

from app.hotstore.client import HotClient, node_client
from app.hotstore.slots import one_slot
from app.ratelimit import slots

log = logging.getLogger("structured_api.ratelimit")

SCRIPT: Final = resources.files("app.ratelimit").joinpath("gcra.lua").read_text()
SCRIPT_SHA: Final = hashlib.sha1(SCRIPT.encode()).hexdigest()  # Redis names scripts by SHA-1

#: A shadow counter counted outside gcra.lua (a request over several Cluster slots).
_COUNT: Final = "redis.call('INCR', KEYS[1]) return redis.call('EXPIRE', KEYS[1], ARGV[1])"
_COUNT_SHA: Final = hashlib.sha1(_COUNT.encode()).hexdigest()

Row = tuple[int, int, int, int]  # conforms, remaining, ms until whole, ms until it conforms


class StoreUnavailable(Exception):
    """Redis could not answer in time (or is in its cooldown after a failure)."""


def build_client(url: str, *, timeout: float, sentinel_password: str | None = None) -> redis.Redis:
    """A client of one Redis with `timeout` for connect and reads (`node_client`)."""
    return node_client(url, timeout=timeout, sentinel_password=sentinel_password)


class LimiterStore:
    """Runs the GCRA script; raises `StoreUnavailable` instead of waiting on a dead Redis.

    Script calls run on a connection owned by the calling thread (`ThreadCommands`), not
    one borrowed from `client`'s pool per call: this is the one Redis call every request
    makes. On a Redis Cluster (a `HotClient` with `cluster=True`) a call whose keys share
    one slot is still one EVALSHA; keys over several slots go through app/ratelimit/slots.py.
    """

    def __init__(self, client: redis.Redis | HotClient, *, cooldown: float = 0.5) -> None:
        self.hot = client if isinstance(client, HotClient) else HotClient.of(client)
        self.cooldown = cooldown
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._command = self.hot.command

    @property
    def client(self) -> Any:
        """The redis-py client underneath (`redis.Redis` or `RedisCluster`)."""
        return self.hot.client

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
        if self.hot.cluster and not one_slot(all_keys):
            split_rows, values = slots.evaluate_split(
                lambda k, a: self.run_script(SCRIPT, SCRIPT_SHA, k, a),
                self.read,
                self._count,
                keys,
                args,
                shadow_keys=shadow_keys,
                shadow_ttl=shadow_ttl,
                gates=gates,
            )
            if split_rows is None:
                return None, values
            return [(int(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in split_rows], values
        argv = (len(keys), shadow_ttl, len(gates), *args)
        raw = self.run_script(SCRIPT, SCRIPT_SHA, all_keys, argv)
        raw_values, rows = cast(tuple[list[bytes], list[list[int]]], raw)
        gate_values: list[bytes | None] = [v or None for v in raw_values]
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
            values = self.hot.mget(keys)
        except RedisError as exc:
            self._trip()
            raise StoreUnavailable(str(exc)) from exc
        return values

    def _count(self, key: str, ttl: int) -> None:
        self.run_script(_COUNT, _COUNT_SHA, [key], [ttl])

    def _trip(self) -> None:
        with self._lock:
            self._down_until = time.monotonic() + self.cooldown
