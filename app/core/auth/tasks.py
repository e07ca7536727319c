"""Periodic auth housekeeping run by Celery beat."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from app.core.auth.state import auth_state
from app.core.db import session_scope

# Keep ended sessions a week for `GET /v1/auth/sessions`-style audits, then drop them.
PURGE_AFTER = timedelta(days=7)


@shared_task(name="sapi.auth.flush_api_key_last_used", ignore_result=True)
def flush_api_key_last_used() -> int:
    """Move API-key last-used times buffered in Redis into PostgreSQL.

    Not acks_late: a lost run only delays the times by one period, and a failed
    write puts the batch back into Redis for the next run.
    """
    from app.services.api_keys import flush_last_used

    with session_scope() as session:
        return flush_last_used(session=session, cache=auth_state().api_keys)


@shared_task(name="sapi.auth.purge_expired_sessions", ignore_result=True)
def purge_expired_sessions() -> int:
    """Delete sessions and refresh tokens that expired or were revoked a week ago.

    Not acks_late: the next hourly run does the same work.
    """
    from app.services.auth import purge_expired

    with session_scope() as session:
        return purge_expired(session=session, older_than=PURGE_AFTER)
