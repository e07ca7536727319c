"""The per-caller concurrency cap's slots in a real Redis (app/ai/concurrency.py).

What gunicorn adds (slots held by running streams, released when they finish or the
client leaves, the 429 envelope) is in test_stream_limits.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from flask import Flask

from app.ai import concurrency
from app.ai.concurrency import PREFIX, acquire
from app.ai.history.journal import Journal
from app.core.errors import ErrorCode, RateLimited
from app.core.warnings import current_warnings
from app.ratelimit.store import LimiterStore, build_client
from tests.support.processes import free_port

LEASE = 60.0


@pytest.fixture
def store(redis_url: str) -> Iterator[LimiterStore]:
    """The limiter's store on the session Redis (keys are per test: a fresh owner each)."""
    client = build_client(redis_url, timeout=0.5)
    yield LimiterStore(client)
    client.close()


def owner() -> str:
    """A caller no other test uses."""
    return f"user:{uuid.uuid4()}"


def test_a_caller_holds_at_most_its_limit_and_a_released_slot_is_free_again(
    store: LimiterStore,
) -> None:
    who = owner()
    held = [acquire(store, who, limit=2, lease_seconds=LEASE) for _ in range(2)]

    with pytest.raises(RateLimited) as refused:
        acquire(store, who, limit=2, lease_seconds=LEASE)
    assert refused.value.code is ErrorCode.RATE_CONCURRENCY_LIMIT
    assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "1"}
    assert refused.value.details == {"limit": 2, "running": 2, "scope": "caller"}
    acquire(store, owner(), limit=2, lease_seconds=LEASE).release()  # others are not affected

    held[0].release()
    held[0].release()  # a second release does nothing
    again = acquire(store, who, limit=2, lease_seconds=LEASE)
    with pytest.raises(RateLimited):
        acquire(store, who, limit=2, lease_seconds=LEASE)
    again.release()
    held[1].release()
    assert store.client.zcard(PREFIX + who) == 0


def test_a_slot_never_released_expires_with_its_lease(store: LimiterStore) -> None:
    # The lease is long enough for the refusal and the TTL check to happen inside it on a
    # loaded machine (0.4 s was not: CI saw the key already gone); the wait is measured
    # from the acquire, so the test still waits one lease, not more.
    who, lease = owner(), 3.0
    acquired = time.monotonic()
    acquire(store, who, limit=1, lease_seconds=lease)  # its process "died": never released
    with pytest.raises(RateLimited):
        acquire(store, who, limit=1, lease_seconds=lease)
    assert 0 < store.client.pttl(PREFIX + who) <= lease * 1000  # idle callers leave no key

    time.sleep(max(0.0, acquired + lease + 0.1 - time.monotonic()))

    acquire(store, who, limit=1, lease_seconds=LEASE).release()


def test_a_resent_acquire_finds_its_own_slot_instead_of_taking_a_second(
    store: LimiterStore,
) -> None:
    # ThreadCommands sends a command again after a dropped connection: the first may have
    # run. Same slot id twice: one slot, and the caller is not refused.
    key, args = PREFIX + owner(), [1, 60_000, "slot-1"]
    first = store.run_script(concurrency._ACQUIRE, concurrency._ACQUIRE_SHA, [key], args)
    second = store.run_script(concurrency._ACQUIRE, concurrency._ACQUIRE_SHA, [key], args)
    assert first == second == [1, 1]
    assert store.client.zcard(key) == 1


def test_no_cap_configured_or_no_store_takes_nothing(store: LimiterStore) -> None:
    who = owner()
    for _ in range(3):
        acquire(store, who, limit=0, lease_seconds=LEASE)
        acquire(None, who, limit=1, lease_seconds=LEASE)
    assert store.client.exists(PREFIX + who) == 0


def test_an_unreachable_redis_lets_the_call_run_with_the_degraded_warning(app: Flask) -> None:
    dead = LimiterStore(build_client(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2))
    with app.test_request_context("/v1/ai/generate", method="POST"):
        started = time.perf_counter()
        slot = acquire(dead, owner(), limit=1, lease_seconds=LEASE)
        second = acquire(dead, owner(), limit=1, lease_seconds=LEASE)  # in the cooldown
        assert time.perf_counter() - started < 0.5
        assert [w.code for w in current_warnings()] == ["RATE_LIMITER_DEGRADED"]
    assert slot.store is None and second.store is None
    slot.release()  # nothing to give back


def test_a_slot_whose_release_cannot_reach_redis_is_left_to_its_lease(
    store: LimiterStore, redis_url: str
) -> None:
    who = owner()
    slot = acquire(store, who, limit=1, lease_seconds=LEASE)
    slot.store = LimiterStore(build_client(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2))

    slot.release()  # logs, never raises: the request is already answered

    assert redis.Redis.from_url(redis_url).zcard(PREFIX + who) == 1
    assert 0 < store.client.pttl(PREFIX + who) <= LEASE * 1000


def test_a_slot_beside_the_journal_is_given_back_in_the_history_push(
    store: LimiterStore, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    journal = Journal(client, name=f"t-{uuid.uuid4()}", write=None)
    journal.background = False
    who = owner()
    slot = acquire(store, who, limit=1, lease_seconds=LEASE, beside_journal=True)
    command = slot.release_command()
    assert command == ("ZREM", PREFIX + who, slot.member)

    assert journal.push({"id": "row-1"}, also=[command])
    slot.released()

    assert client.zcard(PREFIX + who) == 0  # released by the push's round trip
    assert client.llen(journal.pending_key) == 1
    assert slot.release_command() is None
    slot.release()  # nothing left to do
    acquire(store, who, limit=1, lease_seconds=LEASE).release()  # the slot is free again


def test_a_slot_elsewhere_has_no_release_command_and_releases_on_its_own(
    store: LimiterStore,
) -> None:
    who = owner()
    slot = acquire(store, who, limit=1, lease_seconds=LEASE)  # e.g. a Cluster or another Redis
    assert slot.release_command() is None
    slot.release()
    assert store.client.zcard(PREFIX + who) == 0
