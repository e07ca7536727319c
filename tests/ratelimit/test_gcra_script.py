"""The GCRA script on a real Redis: exact capacity, atomic groups, shadow counts, settling."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from app.ratelimit.store import LimiterStore, Row, StoreUnavailable, build_client
from tests.support.processes import free_port

CONSUME, CHECK, SETTLE = 1, 0, 2


@pytest.fixture
def store(redis_url: str) -> Iterator[LimiterStore]:
    """A limiter store on the session Redis, flushed."""
    client = build_client(redis_url, timeout=0.5)
    client.flushdb()
    yield LimiterStore(client)
    client.close()


def limit(quantity: int, window_s: float, capacity: int | None = None) -> tuple[float, float]:
    """(interval_ms, horizon_ms) of `quantity` per `window_s` with `capacity` at once."""
    interval = window_s * 1000 / quantity
    return interval, (capacity or quantity) * interval


def run(
    store: LimiterStore,
    specs: list[tuple[str, tuple[float, float], float, int, int]],
    shadow_keys: list[str] | None = None,
) -> list[Row]:
    """Evaluate (key, limit, cost, group, write) tuples in one call."""
    args: list[float | int] = []
    for _, (interval, horizon), cost, group, write in specs:
        args += [interval, horizon, cost, group, write]
    return store.evaluate([s[0] for s in specs], args, shadow_keys=shadow_keys or [])


def test_a_full_bucket_admits_exactly_its_capacity_then_says_when_to_retry(
    store: LimiterStore,
) -> None:
    hourly = limit(5, 3600)
    rows = [run(store, [("k", hourly, 1, 0, CONSUME)])[0] for _ in range(7)]
    assert [r[0] for r in rows] == [1, 1, 1, 1, 1, 0, 0]
    assert [r[1] for r in rows[:5]] == [4, 3, 2, 1, 0]
    _, remaining, reset_ms, retry_ms = rows[-1]
    assert remaining == 0
    assert 3600_000 - 2000 < reset_ms <= 3600_000  # whole again after one window
    assert 720_000 - 2000 < retry_ms <= 720_000  # one unit refills after window / 5


def test_all_limits_of_a_request_are_consumed_together_or_not_at_all(
    store: LimiterStore,
) -> None:
    wide, narrow = limit(5, 3600), limit(2, 3600)
    both = [("wide", wide, 1, 0, CONSUME), ("narrow", narrow, 1, 0, CONSUME)]
    assert [r[0] for r in run(store, both)] == [1, 1]
    assert [r[0] for r in run(store, both)] == [1, 1]
    rejected = run(store, both)
    assert [r[0] for r in rejected] == [1, 0]
    # The wide limit conformed but was not charged, since the narrow one refused.
    assert rejected[0][1] == 3
    assert run(store, [("wide", wide, 0, 0, CHECK)])[0][1] == 3


def test_burst_zero_paces_requests_at_window_over_quantity(store: LimiterStore) -> None:
    paced = limit(10, 1, capacity=1)  # 100 ms apart
    assert run(store, [("p", paced, 1, 0, CONSUME)])[0][0] == 1
    second = run(store, [("p", paced, 1, 0, CONSUME)])[0]
    assert second[0] == 0
    assert 0 < second[3] <= 100
    time.sleep(second[3] / 1000 + 0.01)
    assert run(store, [("p", paced, 1, 0, CONSUME)])[0][0] == 1


def test_a_check_only_row_never_changes_state(store: LimiterStore) -> None:
    hourly = limit(3, 3600)
    for _ in range(5):
        assert run(store, [("k", hourly, 1, 0, CHECK)])[0][:2] == (1, 3)
    assert store.client.exists("k") == 0


def test_a_failing_shadow_group_counts_once_and_never_touches_the_enforced_group(
    store: LimiterStore,
) -> None:
    live, trial = limit(100, 3600), limit(1, 3600)
    specs = [("live", live, 1, 0, CONSUME), ("trial", trial, 1, 1, CONSUME)]
    first = run(store, specs, shadow_keys=["shadow-count"])
    assert [r[0] for r in first] == [1, 1]
    second = run(store, specs, shadow_keys=["shadow-count"])
    assert [r[0] for r in second] == [1, 0]
    run(store, specs, shadow_keys=["shadow-count"])
    assert store.client.get("shadow-count") == b"2"
    assert 0 < store.client.ttl("shadow-count") <= 3900
    assert second[0][1] == 98


def test_settling_refunds_or_charges_the_difference(store: LimiterStore) -> None:
    budget = limit(1000, 86_400)
    assert run(store, [("t", budget, 300, 0, CONSUME)])[0][:2] == (1, 700)
    assert run(store, [("t", budget, -100, 0, SETTLE)])[0][1] == 800
    assert run(store, [("t", budget, 900, 0, SETTLE)])[0][1] == -100  # overdrawn
    refused = run(store, [("t", budget, 1, 0, CHECK)])[0]
    assert refused[0] == 0
    assert refused[3] > 100 * 86_400  # 101 tokens must refill (86.4 s each)


def test_an_unreachable_redis_fails_fast_then_short_circuits_during_the_cooldown() -> None:
    dead = LimiterStore(build_client(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2))
    started = time.perf_counter()
    with pytest.raises(StoreUnavailable):
        run(dead, [("k", limit(1, 1), 1, 0, CONSUME)])
    assert time.perf_counter() - started < 0.5
    assert dead.healthy is False
    with pytest.raises(StoreUnavailable, match="cooldown"):
        run(dead, [("k", limit(1, 1), 1, 0, CONSUME)])


def test_a_flushed_script_cache_is_reloaded_transparently(store: LimiterStore) -> None:
    assert run(store, [("k", limit(2, 60), 1, 0, CONSUME)])[0][0] == 1
    store.client.script_flush()
    assert run(store, [("k", limit(2, 60), 1, 0, CONSUME)])[0][:2] == (1, 0)
    assert isinstance(store.client, redis.Redis)
