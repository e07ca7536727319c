"""Live usage the operator copies into `.status` (docs/architecture.md: "live usage in CR
status"), summed over every API process from per-minute Redis keys:

* `RateLimitPolicy.status.shadowRejectsLastHour`: what a shadow policy would have
  rejected, from the limiter's counters;
* `ApiVersion.status.requestsLastHour` and `topCallers`: requests to a major and its
  busiest callers, from the counts each API process flushes every `USAGE_FLUSH_SECONDS`
  (app/versioning/usage.py).
"""

from __future__ import annotations

import time
from typing import Any, Final

import redis
from redis.exceptions import RedisError

from app.ratelimit.keys import shadow_key
from app.versioning.usage import MAX_CALLERS_PER_FLUSH, OTHER, callers_key, total_key
from sapi_operator.status import TopCaller

_MINUTES: Final = 60
#: `topCallers` holds at most this many (the CRD's maxItems).
TOP_CALLERS: Final = 10


def shadow_keys(policy: str, *, now: float) -> list[str]:
    """The 60 per-minute counters covering the hour before `now`."""
    minute = int(now // 60)
    return [shadow_key(policy, minute=minute - i) for i in range(_MINUTES)]


def shadow_rejects_last_hour(
    client: redis.Redis, policy: str, *, now: float | None = None
) -> int | None:
    """Would-be rejections of `policy` in the last hour; None when Redis is unreachable."""
    names = shadow_keys(policy, now=time.time() if now is None else now)
    try:
        values: list[bytes | None] = client.mget(names)  # type: ignore[assignment]
    except RedisError:
        return None
    return sum(int(v) for v in values if v is not None)


def version_usage(
    client: redis.Redis, major: int, *, now: float | None = None
) -> dict[str, Any] | None:
    """`requestsLastHour` and `topCallers` of `/v{major}`; None when Redis is unreachable.

    One pipelined round trip: MGET of the 60 minute totals and, per minute, the busiest
    `MAX_CALLERS_PER_FLUSH` callers (ZREVRANGE, summed here), which bounds the read
    however many callers a minute saw. `other` (callers folded away by a flush) counts
    in the total but is no caller, so it never appears in `topCallers`.
    """
    minute = int((time.time() if now is None else now) // 60)
    label = f"v{major}"
    minutes = [minute - i for i in range(_MINUTES)]
    pipe = client.pipeline(transaction=False)
    pipe.mget([total_key(label, m) for m in minutes])
    for m in minutes:
        pipe.zrevrange(callers_key(label, m), 0, MAX_CALLERS_PER_FLUSH - 1, withscores=True)
    try:
        totals, *per_minute = pipe.execute()
    except RedisError:
        return None
    callers: dict[str, int] = {}
    for members in per_minute:
        for raw, score in members:
            name = raw.decode("utf-8", "replace")
            if name != OTHER:
                callers[name] = callers.get(name, 0) + int(score)
    busiest = sorted(callers.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CALLERS]
    return {
        "requestsLastHour": sum(int(v) for v in totals if v is not None),
        "topCallers": [
            TopCaller(caller=name[:253], requests=n).model_dump() for name, n in busiest
        ],
    }
