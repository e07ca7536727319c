"""`get_or_set` for services: one computation per miss across threads, tags, TTL, failures."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from flask import Flask

from app.cache.service import CacheConfig, cache_of, get_or_set, invalidate
from app.cache.store import CacheStore, lock_key
from app.ratelimit.store import build_client
from tests.support.processes import free_port


class Calls:
    """A thread-safe computation counter."""

    def __init__(self) -> None:
        self.n = 0
        self._lock = threading.Lock()

    def __call__(self, value: Any = "v", delay: float = 0.0) -> Any:
        with self._lock:
            self.n += 1
        time.sleep(delay)
        return value


def test_the_value_is_computed_once_then_served_from_the_cache(app: Flask) -> None:
    calls = Calls()
    values = [get_or_set("k", 30, lambda: calls({"a": [1, 2]})) for _ in range(3)]
    assert values == [{"a": [1, 2]}] * 3
    assert calls.n == 1


def test_concurrent_misses_compute_once_and_everyone_gets_the_value(app: Flask) -> None:
    calls = Calls()
    start = threading.Barrier(16)

    def one(i: int) -> Any:
        with app.app_context():
            start.wait()
            return get_or_set("shared", 30, lambda: calls({"by": i}, delay=0.3))

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(16)))
    assert calls.n == 1
    assert len({str(r) for r in results}) == 1


def test_invalidating_a_tag_makes_its_values_stale_and_leaves_others(app: Flask) -> None:
    calls = Calls()
    get_or_set("a", 30, lambda: calls(1), tags=["t1"])
    get_or_set("b", 30, lambda: calls(2), tags=["t2"])
    assert invalidate("t1") is True
    assert get_or_set("a", 30, lambda: calls(10), tags=["t1"]) == 10
    assert get_or_set("b", 30, lambda: calls(20), tags=["t2"]) == 2
    assert calls.n == 3


def test_values_expire_after_their_ttl(app: Flask) -> None:
    assert get_or_set("short", 0.2, lambda: 1) == 1
    assert get_or_set("short", 0.2, lambda: 2) == 1
    time.sleep(0.3)
    assert get_or_set("short", 0.2, lambda: 3) == 3


def test_a_failing_computation_is_not_cached_and_frees_the_lock_at_once(app: Flask) -> None:
    def boom() -> Any:
        raise RuntimeError("upstream failed")

    with pytest.raises(RuntimeError):
        get_or_set("flaky", 30, boom)
    started = time.perf_counter()
    assert get_or_set("flaky", 30, lambda: "ok") == "ok"
    assert time.perf_counter() - started < 0.5  # did not wait for the 10 s lock


def test_a_waiter_takes_over_when_the_lock_holder_died(app: Flask, redis_url: str) -> None:
    # A lock nobody will release (its holder was killed): the next caller waits for its
    # TTL, then takes the lock and computes.
    redis.Redis.from_url(redis_url).set(lock_key("v:orphan", []), "dead-holder", px=300)
    started = time.perf_counter()
    assert get_or_set("orphan", 30, lambda: "recomputed") == "recomputed"
    assert 0.25 < time.perf_counter() - started < 2.0


def test_a_waiter_computes_for_itself_after_max_wait(app: Flask, redis_url: str) -> None:
    cache_of(app).config = CacheConfig(max_wait=0.1)
    redis.Redis.from_url(redis_url).set(lock_key("v:stuck", []), "slow-holder", px=10_000)
    started = time.perf_counter()
    assert get_or_set("stuck", 30, lambda: "mine") == "mine"
    assert time.perf_counter() - started < 1.0


def test_a_disabled_cache_always_computes(app: Flask) -> None:
    cache_of(app).config = CacheConfig(enabled=False)
    calls = Calls()
    for _ in range(3):
        get_or_set("off", 30, calls)
    assert calls.n == 3


@pytest.mark.parametrize("tags", [["t1"], ["t1", "t2"]])
def test_invalidating_against_an_unreachable_redis_reports_it_lost(
    app: Flask, tags: list[str]
) -> None:
    dead = build_client(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    cache_of(app).store = CacheStore(dead)

    assert invalidate(*tags) is False
