"""Backoff with full jitter and `Retry-After` parsing, shared by provider calls and jobs.

Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"): wait a uniform
random time in [0, min(cap, base * 2**attempt)], which spreads clients that failed
together instead of making them retry in lockstep.
"""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt + 1` (attempt counts from 0)."""
    ceiling = min(cap, base * (2 ** min(attempt, 30)))
    return (rng or random).uniform(0, ceiling)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header: delta-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
