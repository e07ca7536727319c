"""Live usage the operator copies into `.status` (DESIGN.md section 5: "live usage in CR
status"): what a shadow policy would have rejected in the last hour, summed over every
API process from the limiter's per-minute Redis counters.
"""

from __future__ import annotations

import time
from typing import Final

import redis
from redis.exceptions import RedisError

from app.core.ratelimit.keys import shadow_key

_MINUTES: Final = 60


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
