"""Wire auth into an app: load keys once, install `identify`, schedule housekeeping.

Request pipeline contract (docs/architecture.md):

* `identify()` (app/auth/identify.py) runs early as a before_request hook and sets
  `g.caller` to a frozen `Caller`; it never touches PostgreSQL for a JWT;
* `current_caller()` returns it anywhere during the request;
* `require_auth(...)` / `require_roles(...)` (app/auth/decorators.py) decorate views
  (above `@operation`).

See docs/auth.md.
"""

from __future__ import annotations

from typing import Final

from celery import Celery
from flask import Flask

from app.auth import tasks
from app.auth.api_keys import resolve_for_cache
from app.auth.identify import identify
from app.auth.keys import load_keyring
from app.auth.passwords import Passwords
from app.auth.state import EXTENSION, AuthState
from app.settings import Settings

FLUSH_TASK: Final = tasks.FLUSH_TASK
PURGE_TASK: Final = tasks.PURGE_TASK


def init_app(app: Flask, settings: Settings) -> AuthState:
    """Load keys once and install `identify` as the next before_request hook.

    Call at the identify point of the factory: before_request hooks run in registration
    order, and identify must precede rate limiting.
    """
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
    """Put the auth housekeeping tasks (app/auth/tasks.py) on beat's schedule."""
    celery_app.conf.beat_schedule[FLUSH_TASK] = {
        "task": FLUSH_TASK,
        "schedule": settings.api_key_last_used_flush_seconds,
    }
    celery_app.conf.beat_schedule[PURGE_TASK] = {"task": PURGE_TASK, "schedule": 3600.0}
