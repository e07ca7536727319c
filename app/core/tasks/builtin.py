"""Built-in tasks: a round-trip probe and beat's heartbeat."""

from __future__ import annotations

import time
from typing import Any

from celery import shared_task
from sqlalchemy import text

from app.core import redis as redis_ext
from app.core.db import session_scope

HEARTBEAT_KEY = "sapi:beat:heartbeat"


@shared_task(name="sapi.system.ping")
def ping(payload: str) -> dict[str, Any]:
    """Echo `payload` after touching PostgreSQL through the app context.

    Not acks_late: it has no side effect, so losing one to a worker crash is harmless.
    """
    with session_scope() as session:
        server_time = session.execute(text("SELECT now()")).scalar_one()
    return {"pong": payload, "db_time": server_time.isoformat()}


@shared_task(name="sapi.system.heartbeat", ignore_result=True)
def heartbeat() -> None:
    """Beat's periodic tick: records that the scheduler and a worker are alive."""
    redis_ext.client().set(HEARTBEAT_KEY, str(time.time()), ex=600)
