"""Wire the rate limiter into an app: `init_app` at the factory's `[pipeline:ratelimit]` mark.

    limiter(app).matcher()                 # compiled policies of the current generation
    reserve_tokens(caller, n) / settle(reservation, actual)   # AI token budgets (tokens.py)

See docs/rate-limiting.md for the semantics (GCRA, priority, shadow, failure modes).
"""

from __future__ import annotations

from flask import Flask

from app.auth import gates
from app.hotstore.client import hot_client
from app.ratelimit.compiler import DefaultLimit
from app.ratelimit.leases import LeaseBook
from app.ratelimit.service import RateLimiter
from app.ratelimit.stage import EXTENSION, install, read_gate_keys
from app.ratelimit.store import LimiterStore
from app.settings import Settings


def default_limit(settings: Settings) -> DefaultLimit | None:
    """The settings' default limit, or None when disabled."""
    if not settings.rate_limit_default_enabled:
        return None
    return DefaultLimit(
        requests=settings.rate_limit_default_requests, window=settings.rate_limit_default_window
    )


def init_app(app: Flask, settings: Settings) -> RateLimiter:
    """Create the limiter (its own short-timeout Redis client) and install the stage.

    The client is the hot store's (app/hotstore/): a Redis Cluster when
    REDIS_CLUSTER_NODES is set, else RATE_LIMIT_REDIS_URL or REDIS_URL.

    Policies come from the config store (`app.extensions["config_store"]`) when the app
    has one, looked up on first use since the store is created later in the factory.
    The limiter's store also reads the identify stage's deferred gate (app/auth/gates.py).
    Busy callers are served from leases unless `RATE_LIMIT_LEASE_MS` is 0 (leases.py).
    """
    client = hot_client(
        settings,
        timeout=settings.rate_limit_redis_timeout,
        url=settings.limiter_redis_url(),
    )
    store = LimiterStore(client)
    ttl = settings.rate_limit_lease_ms / 1000
    rl = RateLimiter(
        store=store,
        default=default_limit(settings),
        leases=LeaseBook(store, ttl=ttl) if ttl > 0 else None,
    )
    rl.bind_config_store(app)
    app.extensions[EXTENSION] = rl
    gates.register_reader(app, read_gate_keys)
    install(app)
    return rl
