"""Rate limiting: RateLimitPolicy specs compiled into matchers, one GCRA script per request.

    ratelimit.init_app(app, settings)      # at the `[pipeline:ratelimit]` point
    limiter(app).matcher()                 # compiled policies of the current generation
    reserve_tokens(caller, n) / settle(reservation, actual)   # AI token budgets

See docs/rate-limiting.md for the semantics (GCRA, priority, shadow, failure modes).
"""

from __future__ import annotations

from flask import Flask

from app.config import Settings
from app.core.ratelimit.compiler import DefaultLimit, compile_policies
from app.core.ratelimit.service import Decision, RateLimiter, StaticPolicies
from app.core.ratelimit.stage import (
    DEGRADED_WARNING,
    EXTENSION,
    Gate,
    defer_gate,
    install,
    limiter,
    resolve_pending_gate,
)
from app.core.ratelimit.store import LimiterStore, StoreUnavailable, build_client
from app.core.ratelimit.tokens import Reservation, reserve_tokens, settle

__all__ = [
    "DEGRADED_WARNING",
    "EXTENSION",
    "Decision",
    "DefaultLimit",
    "Gate",
    "LimiterStore",
    "RateLimiter",
    "Reservation",
    "StaticPolicies",
    "StoreUnavailable",
    "compile_policies",
    "defer_gate",
    "init_app",
    "limiter",
    "reserve_tokens",
    "resolve_pending_gate",
    "settle",
]


def default_limit(settings: Settings) -> DefaultLimit | None:
    """The settings' default limit, or None when disabled."""
    if not settings.rate_limit_default_enabled:
        return None
    return DefaultLimit(
        requests=settings.rate_limit_default_requests, window=settings.rate_limit_default_window
    )


def init_app(app: Flask, settings: Settings) -> RateLimiter:
    """Create the limiter (its own short-timeout Redis client) and install the stage.

    Policies come from the config store (`app.extensions["config_store"]`) when the app
    has one, looked up on first use since the store is created later in the factory.
    """
    client = build_client(
        settings.rate_limit_redis_url or settings.redis_url,
        timeout=settings.rate_limit_redis_timeout,
    )
    rl = RateLimiter(store=LimiterStore(client), default=default_limit(settings))
    rl.bind_config_store(app)
    app.extensions[EXTENSION] = rl
    install(app)
    return rl
