"""Periodic auth housekeeping run by Celery beat."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from celery import shared_task

from app.auth.api_keys import flush_last_used
from app.auth.sessions import purge_expired
from app.auth.state import auth_state
from app.core.db import session_scope

FLUSH_TASK: Final = "sapi.auth.flush_api_key_last_used"
PURGE_TASK: Final = "sapi.auth.purge_expired_sessions"
# Keep ended sessions a week for `GET /v1/auth/sessions`-style audits, then drop them.
PURGE_AFTER = timedelta(days=7)


@shared_task(name=FLUSH_TASK, ignore_result=True)
def flush_api_key_last_used() -> int:
    """Move API-key last-used times buffered in Redis into PostgreSQL.

    Not acks_late: a lost run only delays the times by one period, and a failed
    write puts the batch back into Redis for the next run.
    """
    with session_scope() as session:
        return flush_last_used(session=session, cache=auth_state().api_keys)


@shared_task(name=PURGE_TASK, ignore_result=True)
def purge_expired_sessions() -> int:
    """Delete sessions and refresh tokens that expired or were revoked a week ago.

    Not acks_late: the next hourly run does the same work.
    """
    with session_scope() as session:
        return purge_expired(session=session, older_than=PURGE_AFTER)
