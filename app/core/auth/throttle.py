"""Brute-force protection for login and register: fixed-window counters in Redis.

Keyed per account (SHA-256 of the normalised email, so Redis holds no addresses) and
per client IP (OWASP Authentication Cheat Sheet, "Account lockout" and "Protect
against automated attacks"). A blocked attempt answers 429 with `Retry-After`, whether
or not the account exists. A fixed window is enough here: the limits are small and a
2x burst at a window edge still leaves an online guesser hopeless.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from redis import Redis

from app.core.errors import RateLimited

PREFIX: Final = "sapi:auth:throttle:"


@dataclass(frozen=True, slots=True)
class Counter:
    """One counter: its Redis key, limit and window."""

    key: str
    limit: int
    window: int


def account_key(action: str, email: str) -> str:
    """Counter key for one account (email hashed: no PII in Redis key names)."""
    return f"{PREFIX}{action}:acct:{hashlib.sha256(email.encode()).hexdigest()}"


def ip_key(action: str, ip: str) -> str:
    """Counter key for one client IP."""
    return f"{PREFIX}{action}:ip:{ip}"


def _raise_if_over(counts: list[int], ttls: list[int], counters: list[Counter]) -> None:
    waits = [
        ttl if ttl > 0 else c.window
        for count, ttl, c in zip(counts, ttls, counters, strict=True)
        if count >= c.limit
    ]
    if waits:
        raise RateLimited(
            "Too many attempts; retry later.",
            retry_after=max(waits),
            details={"retry_after": max(waits)},
        )


def ensure_allowed(redis: Redis, counters: list[Counter]) -> None:
    """Raise `RateLimited` when any counter already reached its limit."""
    pipe = redis.pipeline(transaction=False)
    for c in counters:
        pipe.get(c.key)
        pipe.ttl(c.key)
    raw = pipe.execute()
    counts = [int(v or 0) for v in raw[0::2]]
    _raise_if_over(counts, [int(t) for t in raw[1::2]], counters)


def record(redis: Redis, counters: list[Counter]) -> list[int]:
    """Count one event on every counter; the window starts with the first event."""
    pipe = redis.pipeline(transaction=False)
    for c in counters:
        pipe.set(c.key, 0, ex=c.window, nx=True)
        pipe.incr(c.key)
    raw = pipe.execute()
    return [int(v) for v in raw[1::2]]


def hit(redis: Redis, counters: list[Counter]) -> None:
    """Count one attempt and raise `RateLimited` once a limit is passed (register)."""
    counts = record(redis, counters)
    over = [max(0, n - 1) for n in counts]  # the attempt just counted is allowed up to limit
    if any(n >= c.limit for n, c in zip(over, counters, strict=True)):
        pipe = redis.pipeline(transaction=False)
        for c in counters:
            pipe.ttl(c.key)
        _raise_if_over(over, [int(t) for t in pipe.execute()], counters)


def clear(redis: Redis, keys: list[str]) -> None:
    """Reset counters (a successful login clears its account's failures)."""
    if keys:
        redis.delete(*keys)
