"""What the operator reads for `ApiVersion.status`: the last 60 minute keys the API
processes flush (real Redis), summed; the ten busiest callers; None without Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from app.versioning import usage as api_usage
from sapi_operator.status import ApiVersionStatus
from sapi_operator.usage import TOP_CALLERS, version_usage
from tests.support.processes import free_port

NOW = 1_790_000_000.0
MINUTE = int(NOW // 60)


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    """The session Redis, emptied before the test."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


def flushed(r: redis.Redis, major: str, minute: int, callers: dict[str, int]) -> None:
    """What one API flush writes for one major and minute."""
    r.incrby(api_usage.total_key(major, minute), sum(callers.values()))
    for name, n in callers.items():
        r.zincrby(api_usage.callers_key(major, minute), n, name)


def test_requests_and_busiest_callers_of_the_last_hour_are_summed_over_minutes(
    r: redis.Redis,
) -> None:
    flushed(r, "v1", MINUTE, {"user:a": 5, "api_key:k": 2, "other": 40})
    flushed(r, "v1", MINUTE, {"user:a": 1, "anonymous": 3})  # a second process
    flushed(r, "v1", MINUTE - 59, {"api_key:k": 10})
    flushed(r, "v1", MINUTE - 60, {"user:old": 100})  # more than an hour ago
    flushed(r, "v2", MINUTE, {"user:v2": 7})  # another major

    found = version_usage(r, 1, now=NOW)

    assert found == {
        "requestsLastHour": 61,
        "topCallers": [
            {"caller": "api_key:k", "requests": 12},
            {"caller": "user:a", "requests": 6},
            {"caller": "anonymous", "requests": 3},
        ],
    }
    ApiVersionStatus.model_validate(found)  # what the CRD's status schema accepts


def test_top_callers_are_the_ten_busiest_with_ties_in_name_order(r: redis.Redis) -> None:
    flushed(r, "v3", MINUTE, {f"user:{i:02}": 1 + i // 2 for i in range(30)})
    found = version_usage(r, 3, now=NOW)
    assert found is not None
    top = found["topCallers"]
    assert len(top) == TOP_CALLERS
    assert [c["caller"] for c in top[:4]] == ["user:28", "user:29", "user:26", "user:27"]
    assert found["requestsLastHour"] == sum(1 + i // 2 for i in range(30))


def test_a_version_nobody_called_has_zero_requests_and_no_callers(r: redis.Redis) -> None:
    assert version_usage(r, 1, now=NOW) == {"requestsLastHour": 0, "topCallers": []}


def test_usage_is_none_when_redis_is_unreachable() -> None:
    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2)
    assert version_usage(dead, 1, now=NOW) is None
