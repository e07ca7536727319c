"""`get_or_set` and `invalidate`: the cache API services use, with single-flight misses.

On a miss exactly one process (across every worker and host) computes the value while
the others wait for it: the first to take the short Redis lock computes and stores, the
rest poll the entry with a capped backoff. If the holder dies its lock expires and the
next waiter takes over; a waiter that runs out of patience computes for itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from flask import Flask, current_app

from app.cache.store import HIT, LOCKED_BY_US, CacheDown, CacheStore, new_token
from app.core.observability import metrics

log = logging.getLogger("structured_api.cache")
T = TypeVar("T")

EXTENSION: Final = "cache"
DEFAULT_CACHE: Final = "default"  # metrics label of get_or_set callers
# Result vocabulary of sapi_cache_requests_total.
RESULT_HIT: Final = "hit"
RESULT_MISS: Final = "miss"
RESULT_BYPASS: Final = "bypass"
RESULT_ERROR: Final = "error"


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """How long to hold a single-flight lock and how long a waiter waits."""

    enabled: bool = True
    lock_ms: int = 10_000
    max_wait: float = 10.0


class Cache:
    """The cache of one app: a store plus its configuration."""

    def __init__(self, store: CacheStore, config: CacheConfig) -> None:
        self.store = store
        self.config = config


def cache_of(app: Flask | None = None) -> Cache:
    """The cache of `app` (default: the current app)."""
    found: Cache = (app or current_app).extensions[EXTENSION]
    return found


def single_flight(
    cache: Cache,
    key: str,
    *,
    ttl: float,
    tags: Iterable[str],
    compute: Callable[[], tuple[T, str | None]],
    decode: Callable[[str], T],
) -> tuple[T, str]:
    """The cached value of `key`, else `compute()` run once across all processes.

    `compute` returns (value, payload): the payload (JSON text) is stored, or nothing is
    when it is None (say, an error response). Returns the value and how it was served:
    hit, miss (we computed), bypass (cache disabled or gave up waiting) or error.
    """
    if not cache.config.enabled:
        return compute()[0], RESULT_BYPASS
    tag_list = sorted(set(tags))
    token = new_token()
    deadline = time.monotonic() + cache.config.max_wait
    delay = 0.002
    try:
        while True:
            found = cache.store.fetch(
                key, tag_list, token=token, lock_ms=cache.config.lock_ms, try_lock=True
            )
            if found.state == HIT:
                assert found.payload is not None
                return decode(found.payload), RESULT_HIT
            if found.state == LOCKED_BY_US:
                return _compute_and_store(cache, key, tag_list, ttl, token, found.versions, compute)
            if time.monotonic() + delay > deadline:
                log.warning("cache wait for %s timed out; computing without the cache", key)
                return compute()[0], RESULT_BYPASS
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
    except CacheDown:
        return compute()[0], RESULT_ERROR


def _compute_and_store(
    cache: Cache,
    key: str,
    tags: list[str],
    ttl: float,
    token: str,
    versions: str,
    compute: Callable[[], tuple[T, str | None]],
) -> tuple[T, str]:
    try:
        value, payload = compute()
    except BaseException:
        # Let a waiter take over now instead of after the lock's TTL.
        with contextlib.suppress(CacheDown):
            cache.store.store(
                key, tags=tags, token=token, versions=versions, payload=None, ttl_ms=0
            )
        raise
    try:
        ttl_ms = max(1, int(ttl * 1000))
        cache.store.store(
            key, tags=tags, token=token, versions=versions, payload=payload, ttl_ms=ttl_ms
        )
    except CacheDown:
        return value, RESULT_ERROR
    return value, RESULT_MISS


def get_or_set(
    key: str,
    ttl: float,
    fn: Callable[[], Any],
    *,
    tags: Iterable[str] = (),
    app: Flask | None = None,
    cache_name: str = DEFAULT_CACHE,
) -> Any:
    """The cached JSON value of `key`, else `fn()` computed once and kept `ttl` seconds.

    `tags` name what the value depends on; `invalidate(tag)` makes it stale at once.
    Values must be JSON-serialisable. If Redis is unreachable `fn()` is simply called.
    """

    def compute() -> tuple[Any, str | None]:
        value = fn()
        return value, json.dumps(value, separators=(",", ":"), default=str)

    value, result = single_flight(
        cache_of(app), "v:" + key, ttl=ttl, tags=tags, compute=compute, decode=json.loads
    )
    metrics.CACHE_REQUESTS.labels(cache_name, result).inc()
    return value


def invalidate(*tags: str, app: Flask | None = None, cache_name: str = DEFAULT_CACHE) -> bool:
    """Make every entry stored under one of `tags` stale; False if Redis was unreachable."""
    if not tags:
        return True
    try:
        cache_of(app).store.bump(tags)
    except CacheDown:
        log.warning("cache invalidation of %s lost: Redis unreachable", ",".join(tags))
        metrics.CACHE_REQUESTS.labels(cache_name, RESULT_ERROR).inc()
        return False
    metrics.CACHE_INVALIDATIONS.labels(cache_name).inc(len(tags))
    return True
