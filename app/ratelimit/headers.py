"""Rate-limit response headers: IETF `RateLimit-Policy` / `RateLimit` plus `X-RateLimit-*`.

draft-ietf-httpapi-ratelimit-headers (-08 onwards) defines both fields as Structured
Field Lists (RFC 9651) of Strings naming a quota policy, with parameters:

    RateLimit-Policy: "free.gen.1m";q=60;w=60, "free.gen.1d";q=1000;w=86400
    RateLimit: "free.gen.1m";r=59;t=1, "free.gen.1d";r=999;t=87

`q` quota units per `w` seconds; `r` units remaining now, `t` seconds until the quota is
whole again (GCRA refills continuously). `X-RateLimit-Limit/Remaining/Reset` (delta
seconds) repeat the most restrictive limit for clients that only know the de-facto form.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from werkzeug.datastructures import Headers

from app.core.flaskapp import append_headers
from app.ratelimit.model import CompiledLimit

RATELIMIT_POLICY: Final = "RateLimit-Policy"
RATELIMIT: Final = "RateLimit"
X_LIMIT: Final = "X-RateLimit-Limit"
X_REMAINING: Final = "X-RateLimit-Remaining"
X_RESET: Final = "X-RateLimit-Reset"
RETRY_AFTER: Final = "Retry-After"


@dataclass(frozen=True, slots=True)
class LimitState:
    """A limit's state after this request: units left and milliseconds until whole."""

    limit: CompiledLimit
    remaining: int
    reset_ms: int
    retry_ms: int = 0

    @property
    def reset_s(self) -> int:
        """Whole seconds until the quota is whole again."""
        return max(0, math.ceil(self.reset_ms / 1000))


def sf_string(value: str) -> str:
    """An RFC 9651 String (names are RFC 1123 labels and dots, so only quoting is needed)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def policy_header(limits: Iterable[CompiledLimit]) -> str:
    """The `RateLimit-Policy` value for these limits (static per plan)."""
    return ", ".join(f"{sf_string(lim.name)};q={lim.quantity};w={lim.window_s}" for lim in limits)


def most_restrictive(states: list[LimitState]) -> LimitState:
    """The limit a client hits first: fewest remaining, then the longest reset."""
    return min(states, key=lambda s: (max(0, s.remaining), -s.reset_ms))


def apply(
    headers: Headers,
    *,
    policy: str,
    states: list[LimitState],
    rejected: LimitState | None,
) -> None:
    """Add the rate-limit headers to a response (only this stage sets them: appended)."""
    if not states:
        return
    top = rejected or most_restrictive(states)
    reset_ms = top.retry_ms if rejected else top.reset_ms
    append_headers(
        headers,
        (
            (RATELIMIT_POLICY, policy),
            (
                RATELIMIT,
                ", ".join(
                    f"{sf_string(s.limit.name)};r={max(0, s.remaining)};t={s.reset_s}"
                    for s in states
                ),
            ),
            (X_LIMIT, str(top.limit.quantity)),
            (X_REMAINING, str(0 if rejected else max(0, top.remaining))),
            (X_RESET, str(max(0, math.ceil(reset_ms / 1000)))),
        ),
    )
