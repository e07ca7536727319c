"""Redis side of the cache: entries, single-flight locks and tag versions.

Keys (all under `sapi:cache:`):

* `e:<key>`: an entry, `"<tag versions>\\n<JSON>"`, with the TTL the caller chose;
* `l:<key>`: the single-flight lock (random token, short TTL);
* `t:<tag>`: a tag's version counter. Invalidating a tag is one INCR: every entry
  stored under an older version is stale from then on and simply expires.

The cache is an optimisation, so Redis trouble never fails a request: every method
raises `CacheDown`, the caller computes the value itself, and after a failure the store
refuses calls for `cooldown` seconds instead of paying the timeout on each request.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import redis
from redis.exceptions import NoScriptError, RedisError

from app.core.redis_client import ThreadCommands

PREFIX: Final = "sapi:cache:"
ENTRY: Final = PREFIX + "e:"
LOCK: Final = PREFIX + "l:"
TAG: Final = PREFIX + "t:"

HIT: Final = 1
LOCKED_BY_US: Final = 2


class CacheDown(Exception):
    """Redis did not answer (or the store is cooling down after it did not)."""


@dataclass(frozen=True, slots=True)
class _Script:
    source: str
    sha: str

    @classmethod
    def load(cls, name: str) -> _Script:
        source = resources.files("app.cache").joinpath(name).read_text()
        return cls(source, hashlib.sha1(source.encode()).hexdigest())


@dataclass(frozen=True, slots=True)
class Fetched:
    """What `fetch` found: a current payload, or whether we hold the lock."""

    state: int
    payload: str | None
    versions: str


class CacheStore:
    """Runs the two cache scripts; raises `CacheDown` instead of waiting on a dead Redis."""

    def __init__(self, client: redis.Redis, *, cooldown: float = 0.5) -> None:
        self.client = client
        # A write's invalidation is one INCR: sent on the thread's own connection, not
        # through a pipeline and the pool (app/core/redis_client.py, docs/performance.md).
        self._commands = ThreadCommands(client)
        self.cooldown = cooldown
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._fetch = _Script.load("fetch.lua")
        self._store = _Script.load("store.lua")

    def _call(self, script: _Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if time.monotonic() < self._down_until:
            raise CacheDown("cache store cooling down after a failure")
        try:
            try:
                return self.client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:  # a restarted Redis forgot it: EVAL loads it again
                return self.client.eval(script.source, len(keys), *keys, *args)
        except RedisError as exc:
            with self._lock:
                self._down_until = time.monotonic() + self.cooldown
            raise CacheDown(type(exc).__name__) from exc

    def fetch(
        self, key: str, tags: Sequence[str], *, token: str, lock_ms: int, try_lock: bool
    ) -> Fetched:
        """The current entry of `key` under `tags`, else try to take its lock."""
        keys = [ENTRY + key, LOCK + key, *(TAG + t for t in tags)]
        state, payload, versions = self._call(
            self._fetch, keys, [token, lock_ms, "1" if try_lock else "0"]
        )
        text = payload.decode() if state == HIT else None
        return Fetched(int(state), text, versions.decode())

    def store(
        self, key: str, *, token: str, versions: str, payload: str | None, ttl_ms: int
    ) -> None:
        """Write `payload` (unless None) tagged with `versions`, then release our lock."""
        value = "" if payload is None else f"{versions}\n{payload}"
        self._call(self._store, [ENTRY + key, LOCK + key], [token, value, ttl_ms])

    def bump(self, tags: Sequence[str]) -> None:
        """Invalidate every entry stored under any of `tags`."""
        if time.monotonic() < self._down_until:
            raise CacheDown("cache store cooling down after a failure")
        try:
            if len(tags) == 1:
                self._commands("INCR", TAG + tags[0])
                return
            pipe = self.client.pipeline(transaction=False)
            for tag in tags:
                pipe.incr(TAG + tag)
            pipe.execute()
        except RedisError as exc:
            raise CacheDown(type(exc).__name__) from exc


def new_token() -> str:
    """A lock token only its holder knows."""
    return secrets.token_hex(8)
