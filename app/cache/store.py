"""Redis side of the cache: entries, single-flight locks and tag versions.

Keys (all under `sapi:cache:{<slot tag>}:`, app/hotstore/slots.py):

* `e:<key>`: an entry, `"<tag versions>\\n<JSON>"`, with the TTL the caller chose;
* `l:<key>`: the single-flight lock (random token, short TTL);
* `t:<tag>`: a tag's version counter. Invalidating a tag is an INCR: every entry
  stored under an older version is stale from then on and simply expires.

`fetch.lua` reads an entry, its lock and its tags' counters in one call, so on a Redis
Cluster they must share a slot: an entry with one tag lives under `{t:<tag>}` beside
that tag's counter, an untagged one under its own key, and every entry with several
tags under `{multi}`, which keeps its own copy of each counter. Invalidating a tag bumps
both of its counters (`{t:<tag>}` and `{multi}`).

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

from app.hotstore.client import HotClient
from app.hotstore.slots import tag

PREFIX: Final = "sapi:cache:"
#: Slot tag of every entry stored under several tags (and of its copies of their counters).
MULTI: Final = tag("multi")


def _base(key: str, tags: Sequence[str]) -> str:
    """`sapi:cache:{<slot tag>}:`, the prefix of every key `fetch` reads for this entry."""
    if len(tags) == 1:
        return f"{PREFIX}{tag('t:' + tags[0])}:"
    return f"{PREFIX}{MULTI if tags else tag('e:' + key)}:"


def lock_key(key: str, tags: Sequence[str]) -> str:
    """The single-flight lock of the entry `key` stored under `tags`."""
    return f"{_base(key, tags)}l:{key}"


def _counters(name: str) -> tuple[str, str]:
    """A tag's two version counters: beside its single-tag entries, and the `{multi}` copy."""
    return f"{_base('', [name])}t:{name}", f"{PREFIX}{MULTI}:t:{name}"


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

    def __init__(self, client: redis.Redis | HotClient, *, cooldown: float = 0.5) -> None:
        self.hot = client if isinstance(client, HotClient) else HotClient.of(client)
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
                return self.hot.command("EVALSHA", script.sha, len(keys), *keys, *args)
            except NoScriptError:  # a restarted Redis forgot it: EVAL loads it again
                return self.hot.command("EVAL", script.source, len(keys), *keys, *args)
        except RedisError as exc:
            with self._lock:
                self._down_until = time.monotonic() + self.cooldown
            raise CacheDown(type(exc).__name__) from exc

    def fetch(
        self, key: str, tags: Sequence[str], *, token: str, lock_ms: int, try_lock: bool
    ) -> Fetched:
        """The current entry of `key` under `tags`, else try to take its lock."""
        base = _base(key, tags)
        keys = [f"{base}e:{key}", f"{base}l:{key}", *(f"{base}t:{t}" for t in tags)]
        state, payload, versions = self._call(
            self._fetch, keys, [token, lock_ms, "1" if try_lock else "0"]
        )
        text = payload.decode() if state == HIT else None
        return Fetched(int(state), text, versions.decode())

    def store(
        self,
        key: str,
        *,
        tags: Sequence[str],
        token: str,
        versions: str,
        payload: str | None,
        ttl_ms: int,
    ) -> None:
        """Write `payload` (unless None) tagged with `versions`, then release our lock."""
        value = "" if payload is None else f"{versions}\n{payload}"
        base = _base(key, tags)
        self._call(self._store, [f"{base}e:{key}", f"{base}l:{key}"], [token, value, ttl_ms])

    def bump(self, tags: Sequence[str]) -> None:
        """Invalidate every entry stored under any of `tags`."""
        if time.monotonic() < self._down_until:
            raise CacheDown("cache store cooling down after a failure")
        try:
            pipe = self.hot.pipeline()
            for name in tags:
                for counter in _counters(name):
                    pipe.incr(counter)
            self.hot.execute(pipe)
        except RedisError as exc:
            raise CacheDown(type(exc).__name__) from exc


def new_token() -> str:
    """A lock token only its holder knows."""
    return secrets.token_hex(8)
