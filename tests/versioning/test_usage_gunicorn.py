"""Usage counts across processes: two gunicorn workers each flush their own counts, and
Redis holds the sum; a worker stopping gracefully flushes what it still holds."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from app.versioning import usage
from tests.ratelimit.live import LiveApi, get, live_api
from tests.support.processes import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PROBE = "/v1/limits/me"
#: Requests per worker (in pinning order): (alice, bob).
PLAN = ((6, 4), (5, 3))


def call_both_workers(api: LiveApi) -> None:
    """PLAN's requests, on a kept-alive connection held by each worker."""
    alice, bob = api.token("alice", ["user"]), api.token("bob", ["user"])
    for conn, (a, b) in zip(api.pinned_connections().values(), PLAN, strict=True):
        for headers, n in ((alice, a), (bob, b)):
            for _ in range(n):
                assert get(conn, PROBE, headers)[0] == 200
        conn.close()


def stored(api: LiveApi) -> tuple[int, dict[str, int]]:
    """Requests to v1 and per caller, summed over every minute key in Redis."""
    r = redis.Redis.from_url(api.settings.redis_url)
    total = sum(int(r.get(k) or 0) for k in r.scan_iter(usage.USAGE_PREFIX + "v1:*"))
    callers: dict[str, int] = {}
    for key in r.scan_iter(usage.CALLERS_PREFIX + "v1:*"):
        for member, score in r.zrange(key, 0, -1, withscores=True):
            callers[member.decode()] = callers.get(member.decode(), 0) + int(score)
    return total, callers


EXPECTED = (18, {"user:alice": 11, "user:bob": 7})


def test_two_workers_counts_add_up_in_redis_within_the_flush_interval(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    with live_api(database_url, redis_url, tmp_path, USAGE_FLUSH_SECONDS="1") as api:
        call_both_workers(api)
        began = time.monotonic()
        wait_for(lambda: stored(api) == EXPECTED, timeout=10, interval=0.1, what="both flushed")
        took = time.monotonic() - began
        time.sleep(1.5)  # another interval: nothing is written twice
        assert stored(api) == EXPECTED
    assert took < 5, took
    print(f"\ncounts of both workers in Redis {took:.2f} s after the last request")  # noqa: T201


def test_workers_stopping_gracefully_flush_what_they_hold(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    with live_api(database_url, redis_url, tmp_path, USAGE_FLUSH_SECONDS="60") as api:
        call_both_workers(api)
        assert stored(api) == (0, {})  # nothing flushed yet: the interval is a minute
        api.process.stop()
        assert stored(api) == EXPECTED
