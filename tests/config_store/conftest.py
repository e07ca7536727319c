"""Config-store helpers: admin and user callers, specs per kind, synchronous refresh.

The in-process app's sessions live inside a per-test transaction that is never
committed, so its watcher thread (which reads committed rows on its own connection)
cannot see them; `refresh()` loads the snapshot through the test's own connection.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlmodel import Session

from app.auth import sessions as auth_service
from app.auth import users as user_service
from app.auth.state import auth_state
from app.config_store.extension import config_store
from app.config_store.snapshot import Snapshot

SPECS: dict[str, dict[str, Any]] = {
    "ApiVersion": {"version": "1.0", "phase": "Deprecated", "successor": "2.0"},
    "RateLimitPolicy": {
        "rules": [{"name": "per-user", "key": "user", "limits": [{"requests": 5, "window": "1m"}]}]
    },
    "AIProvider": {"type": "Echo", "models": [{"name": "echo-1"}]},
}
COLLECTIONS: dict[str, str] = {
    "ApiVersion": "api-versions",
    "RateLimitPolicy": "rate-limit-policies",
    "AIProvider": "ai-providers",
}


def bearer_for(session: Session, roles: tuple[str, ...]) -> dict[str, str]:
    """An Authorization header of a fresh user holding `roles`."""
    auth = auth_state()
    user = user_service.create_user(
        session=session,
        auth=auth,
        email=f"{roles[0]}-{secrets.token_hex(4)}@example.com",
        password="pw-" + secrets.token_urlsafe(18),
        roles=roles,
    )
    tokens = auth_service.start_session(
        session=session, auth=auth, user=user, ip="127.0.0.1", user_agent="pytest"
    )
    return {"Authorization": f"Bearer {tokens.access_token}"}


@pytest.fixture
def admin(session: Session) -> dict[str, str]:
    """Headers of an admin."""
    return bearer_for(session, ("admin",))


@pytest.fixture
def user(session: Session) -> dict[str, str]:
    """Headers of a plain user."""
    return bearer_for(session, ("user",))


@pytest.fixture
def refresh(app: Flask, session: Session) -> Callable[[], Snapshot]:
    """Load the snapshot through the test's transaction and install it."""
    return lambda: config_store(app).refresh(session.connection())
