"""Identity and access: access JWTs, refresh-token families, API keys, roles (issue 3).

Request pipeline contract (DESIGN section 4):

* `identify()` runs early as a before_request hook and sets `g.caller` to a frozen
  `Caller`; it never touches PostgreSQL for a JWT;
* `current_caller()` returns it anywhere during the request;
* `require_auth(...)` / `require_roles(...)` decorate views (above `@operation`).

See docs/auth.md.
"""

from __future__ import annotations

from typing import Final

from celery import Celery
from flask import Flask

from app.config import Settings
from app.core.auth.caller import (
    ANONYMOUS,
    DEFAULT_ROLES,
    ROLES,
    SCOPES,
    WRITE_ROLES,
    Caller,
    Role,
    current_caller,
)
from app.core.auth.decorators import Requirement, find_requirement, require_auth, require_roles
from app.core.auth.identify import identify
from app.core.auth.keys import load_keyring
from app.core.auth.passwords import Passwords
from app.core.auth.state import EXTENSION, AuthState, auth_state

__all__ = [
    "ANONYMOUS",
    "DEFAULT_ROLES",
    "ROLES",
    "SCOPES",
    "WRITE_ROLES",
    "AuthState",
    "Caller",
    "Requirement",
    "Role",
    "auth_state",
    "current_caller",
    "find_requirement",
    "identify",
    "init_app",
    "require_auth",
    "require_roles",
    "schedule_tasks",
]

FLUSH_TASK: Final = "sapi.auth.flush_api_key_last_used"
PURGE_TASK: Final = "sapi.auth.purge_expired_sessions"


def init_app(app: Flask, settings: Settings) -> AuthState:
    """Load keys once and install `identify` as the next before_request hook.

    Call at the `[pipeline:identify]` mark of the factory: before_request hooks run in
    registration order, and identify must precede rate limiting.
    """
    from app.services.api_keys import resolve_for_cache

    state = AuthState(
        settings=settings,
        keyring=load_keyring(settings),
        passwords=Passwords(
            memory_kib=settings.argon2_memory_kib,
            time_cost=settings.argon2_time_cost,
            parallelism=settings.argon2_parallelism,
        ),
        resolve_api_key=resolve_for_cache,
        extensions=app.extensions,
    )
    app.extensions[EXTENSION] = state
    app.before_request(identify)
    return state


def schedule_tasks(celery_app: Celery, settings: Settings) -> None:
    """Register the auth housekeeping tasks and their beat schedule."""
    from app.core.auth import tasks  # noqa: F401 - registers the shared tasks

    celery_app.conf.beat_schedule[FLUSH_TASK] = {
        "task": FLUSH_TASK,
        "schedule": settings.api_key_last_used_flush_seconds,
    }
    celery_app.conf.beat_schedule[PURGE_TASK] = {"task": PURGE_TASK, "schedule": 3600.0}
