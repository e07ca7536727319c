"""Leases on a real Redis: the lease script's check and charge, and who gets a lease."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from app.ratelimit.leases import SCRIPT, SCRIPT_SHA, LeaseBook
from app.ratelimit.model import CompiledLimit
from app.ratelimit.store import LimiterStore, build_client

TTL_MS = 250


@pytest.fixture
def store(redis_url: str) -> Iterator[LimiterStore]:
    """A limiter store on the session Redis, flushed."""
    client = build_client(redis_url, timeout=0.5)
    client.flushdb()
    yield LimiterStore(client)
    client.close()


def limit(quantity: int, window_s: int) -> CompiledLimit:
    interval = window_s * 1000 / quantity
    return CompiledLimit(
        index=0,
        unit="requests",
        quantity=quantity,
        window=f"{window_s}s",
        window_s=window_s,
        capacity=quantity,
        name="t",
        key_part=f"{quantity}-{window_s}",
        interval_ms=interval,
        horizon_ms=quantity * interval,
    )


def lease(store: LimiterStore, key: str, lim: CompiledLimit, want: int) -> tuple[int, list[int]]:
    raw = store.run_script(
        SCRIPT, SCRIPT_SHA, [key], [1, want, TTL_MS, lim.interval_ms, lim.horizon_ms]
    )
    granted, rows = raw  # type: ignore[misc]
    return int(granted), [int(x) for x in rows[0]]


def redis_now_ms(store: LimiterStore) -> float:
    seconds, micros = store.client.time()
    return seconds * 1000 + micros / 1000


def test_a_lease_is_checked_as_used_now_and_charged_as_used_at_its_end(
    store: LimiterStore,
) -> None:
    hourly = limit(100, 3600)  # one permit per 36 s
    before = redis_now_ms(store)
    granted, (remaining, reset_ms, retry_ms) = lease(store, "k", hourly, 5)
    assert granted == 5 and retry_ms == 0
    tat = float(store.client.get("k") or 0)
    # max(TAT, now + ttl) + 5 intervals: the TAT of five permits used at the lease's end.
    assert before + TTL_MS + 5 * 36_000 <= tat <= redis_now_ms(store) + TTL_MS + 5 * 36_000
    assert remaining == 94  # 100 - 5, and the ttl of refill (under one interval here)
    assert 5 * 36_000 + TTL_MS - 50 <= reset_ms <= 5 * 36_000 + TTL_MS


def test_one_permit_is_used_at_once_so_it_is_charged_unshifted(store: LimiterStore) -> None:
    hourly = limit(100, 3600)
    before = redis_now_ms(store)
    assert lease(store, "k", hourly, 1)[0] == 1
    assert float(store.client.get("k") or 0) <= max(before, redis_now_ms(store)) + 36_000


def test_a_lease_gets_only_the_room_left_then_a_refusal_that_charges_nothing(
    store: LimiterStore,
) -> None:
    small = limit(300, 3600)  # one permit per 12 s
    store.client.set("k", str(redis_now_ms(store) + 297 * 12_000))  # 3 permits of room
    granted, (remaining, _, _) = lease(store, "k", small, 10)
    assert granted == 3 and remaining <= 0
    tat = store.client.get("k")
    granted, (remaining, _, retry_ms) = lease(store, "k", small, 10)
    assert granted == 0 and remaining <= 0
    assert 0 < retry_ms <= 12_000 + TTL_MS
    assert store.client.get("k") == tat  # refused: nothing charged


def test_several_limits_lease_the_same_count_or_nothing(store: LimiterStore) -> None:
    wide, narrow = limit(1000, 3600), limit(200, 3600)
    store.client.set("narrow", str(redis_now_ms(store) + 198 * 18_000))  # 2 of room
    args = [2, 8, TTL_MS, wide.interval_ms, wide.horizon_ms, narrow.interval_ms, narrow.horizon_ms]
    granted, rows = store.run_script(SCRIPT, SCRIPT_SHA, ["wide", "narrow"], args)  # type: ignore[misc]
    assert int(granted) == 2
    assert int(rows[0][0]) == 997  # charged 2, not 8 (and the ttl: part of a third)


def hot(book: LeaseBook, key: tuple[str, ...], lim: CompiledLimit, n: int) -> int:
    """`want` after n requests of one caller in quick succession (the last answer)."""
    got = 1
    for _ in range(n):
        got = book.want(key, [lim])
        if got > 1:
            return got
    return got


def test_quiet_callers_and_small_limits_get_one_round_trip_per_request(
    store: LimiterStore,
) -> None:
    book = LeaseBook(store, ttl=0.25)
    assert hot(book, ("quiet",), limit(600, 60), 3) == 1
    assert hot(book, ("small",), limit(50, 3600), 100) == 1  # under 2 per QUANTITY_SHARE


def test_a_hot_caller_gets_a_lease_and_spends_it_locally_until_it_expires(
    store: LimiterStore,
) -> None:
    book = LeaseBook(store, ttl=0.25)
    lim, key = limit(6000, 60), ("sapi:rl:p:r:x:u:1",)
    want = hot(book, key, lim, 20)
    assert want > 1
    granted, held = book.grant(key, list(key), [lim], want)
    assert granted == want and held.left == want - 1
    taken = [book.take(key) for _ in range(want - 1)]
    assert all(t is held for t in taken)
    assert book.take(key) is None  # spent: ask Redis
    # An expired lease is never used, whatever it has left.
    want = hot(book, key, lim, 20)
    assert want > 1
    book.grant(key, list(key), [lim], want)
    time.sleep(0.3)
    assert book.take(key) is None


def test_one_grant_in_flight_per_key_so_no_lease_replaces_another(store: LimiterStore) -> None:
    book = LeaseBook(store, ttl=0.25)
    lim, key = limit(6000, 60), ("k",)
    assert hot(book, key, lim, 20) > 1  # this thread is granting ...
    others: list[int] = []
    thread = threading.Thread(target=lambda: others.append(book.want(key, [lim])))
    thread.start()
    thread.join()
    assert others == [1]  # ... so another one goes to Redis for itself
