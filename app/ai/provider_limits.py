"""A provider's own `limits` (rpm, tpm), enforced across every process before calling it.

Same GCRA script and Redis as the rate limiter (app/ratelimit/gcra.lua), keyed per
provider, so five gateway replicas together stay under the provider's quota instead of
each learning it from 429s. A spent provider is skipped like an open breaker (the next
one by priority is tried); tokens are counted from the reservation estimate. When Redis
cannot answer, the provider is called anyway: its own 429s still protect it.
"""

from __future__ import annotations

import math
from typing import Final, Protocol

from app.core.specs.ai_provider import ProviderLimits
from app.ratelimit.store import Row, StoreUnavailable

PREFIX: Final = "sapi:ai:plimit:"
_MINUTE_MS: Final = 60_000.0
_CONSUME: Final = 1  # op code of gcra.lua (see app/ratelimit/tokens.py)


class Store(Protocol):
    """The part of `LimiterStore` used here."""

    def evaluate(self, keys: list[str], args: list[float | int]) -> list[Row]: ...


def take(store: Store, provider: str, limits: ProviderLimits, tokens: int) -> float | None:
    """Take one request and `tokens` from the provider's budgets; seconds to wait if spent."""
    keys: list[str] = []
    args: list[float | int] = []
    if limits.rpm:
        keys.append(f"{PREFIX}{provider}:rpm:{limits.rpm}")
        args.extend((_MINUTE_MS / limits.rpm, _MINUTE_MS, 1, 0, _CONSUME))
    if limits.tpm:
        keys.append(f"{PREFIX}{provider}:tpm:{limits.tpm}")
        args.extend((_MINUTE_MS / limits.tpm, _MINUTE_MS, min(tokens, limits.tpm), 0, _CONSUME))
    if not keys:
        return None
    try:
        rows = store.evaluate(keys, args)
    except StoreUnavailable:
        return None
    waits = [row[3] for row in rows if not row[0]]
    return math.ceil(max(waits)) / 1000 if waits else None
