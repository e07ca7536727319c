"""A pausable API-key cache fill, for tests/auth/test_live_auth_races.py.

When the test sets `ARMED` in Redis, the next API-key cache fill in any worker stops
between its PostgreSQL read and its Redis write (it sets `PAUSED` to its pid) until the
test pushes to `RELEASE`.
"""

from __future__ import annotations

import os
import time
from typing import Final

from flask import Flask

from app.auth.apikey_cache import RejectedKey, ResolvedKey
from app.auth.state import EXTENSION, AuthState

ARMED: Final = "test:auth:pause-fill:armed"
PAUSED: Final = "test:auth:pause-fill:paused"
RELEASE: Final = "test:auth:pause-fill:release"
PAUSE_LIMIT: Final = 20  # seconds; the test releases long before


def install(app: Flask) -> None:
    """Wrap the app's key resolver (the read a cache fill makes) with the pause."""
    state: AuthState = app.extensions[EXTENSION]
    resolve = state.resolve_api_key

    def pausable(key_hash: str) -> ResolvedKey | RejectedKey:
        entry = resolve(key_hash)  # the PostgreSQL read
        redis = state.redis
        if redis.delete(ARMED):  # the first fill after arming takes it
            redis.set(PAUSED, str(os.getpid()))
            # Polled: the app's client has a 0.5 s socket timeout, shorter than a BLPOP.
            deadline = time.monotonic() + PAUSE_LIMIT
            while redis.lpop(RELEASE) is None and time.monotonic() < deadline:
                time.sleep(0.01)
        return entry

    state.resolve_api_key = pausable
