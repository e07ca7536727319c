"""Auth housekeeping tasks: beat schedule, purge of old sessions, last-used flush by a worker."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from flask import Flask
from sqlalchemy import Engine
from sqlmodel import Session, select

from app.auth.apikey_cache import LAST_USED_KEY
from app.auth.extension import FLUSH_TASK, PURGE_TASK
from app.auth.models.api_key import ApiKey
from app.auth.models.session import AuthSession, RefreshToken
from app.auth.models.user import User
from app.auth.opaque import digest, display_prefix, new_api_key
from app.auth.sessions import purge_expired
from app.auth.state import AuthState
from app.core.models import utcnow
from app.core.tasks import EXTENSION as CELERY
from app.factory import create_app
from app.settings import Settings
from tests.auth.conftest import Ledger, unique_email
from tests.core.test_celery import with_db, worker_env
from tests.support.processes import celery_worker, wait_for

WORKER_REDIS_DB = 8


def test_beat_schedules_the_auth_housekeeping_tasks(app: Flask, settings: Settings) -> None:
    celery_app: Celery = app.extensions[CELERY]
    schedule = celery_app.conf.beat_schedule

    assert schedule[FLUSH_TASK]["schedule"] == settings.api_key_last_used_flush_seconds
    assert schedule[PURGE_TASK]["task"] == PURGE_TASK
    assert {FLUSH_TASK, PURGE_TASK} <= set(celery_app.tasks)


def test_purge_drops_sessions_ended_or_expired_a_week_ago_with_their_tokens(
    session: Session, make_user: Any, issue: Any
) -> None:
    account = make_user()
    old, live = issue(account), issue(account)
    stale = session.get(AuthSession, old.session_id)
    assert stale is not None
    stale.revoked_at = utcnow() - timedelta(days=8)
    session.add(stale)
    session.commit()

    assert purge_expired(session=session, older_than=timedelta(days=7)) == 1

    remaining = session.exec(select(AuthSession.id)).all()
    assert remaining == [live.session_id]
    tokens = session.exec(select(RefreshToken.session_id)).all()
    assert set(tokens) == {live.session_id}


def test_the_flush_task_body_writes_buffered_times(
    app: Flask, auth: AuthState, make_user: Any, make_key: Any, session: Session
) -> None:
    from app.auth.tasks import flush_api_key_last_used

    row, _ = make_key(make_user(), ["ai:jobs"])
    auth.redis.hset(LAST_USED_KEY, str(row.id), str(time.time()))

    assert flush_api_key_last_used.run() == 1

    session.refresh(row)
    assert row.last_used_at is not None


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_real_worker_flushes_last_used_times_into_postgresql(
    database_url: str,
    redis_url: str,
    migrated_engine: Engine,
    tmp_path: Path,
    ledger: Ledger,
) -> None:
    settings = Settings(
        app_env="test", database_url=database_url, redis_url=with_db(redis_url, WORKER_REDIS_DB)
    )
    producer: Celery = create_app(settings).extensions[CELERY]
    key = new_api_key()
    ledger.add(key)
    # Committed for real: the worker has its own connections, outside the test transaction.
    with Session(migrated_engine, expire_on_commit=False) as s:
        user = User(email=unique_email(), password_hash="x", roles=["user"])
        s.add(user)
        s.flush()
        row = ApiKey(user_id=user.id, name="w", prefix=display_prefix(key), key_hash=digest(key))
        s.add(row)
        s.commit()
    broker = redis.Redis.from_url(settings.redis_url)
    try:
        broker.flushdb()
        used_at = time.time() - 30
        broker.hset(LAST_USED_KEY, str(row.id), str(used_at))
        with celery_worker(producer, env=worker_env(settings), log_dir=tmp_path) as worker:
            producer.send_task(FLUSH_TASK)

            def flushed() -> bool:
                with Session(migrated_engine) as s:
                    fresh = s.get(ApiKey, row.id)
                    return fresh is not None and fresh.last_used_at is not None

            wait_for(flushed, timeout=60, interval=0.2, what="the flush task")
            worker.process.check_alive()
        with Session(migrated_engine) as s:
            stored = s.get(ApiKey, row.id)
            assert stored is not None and stored.last_used_at is not None
            assert abs(stored.last_used_at.timestamp() - used_at) < 1
        assert not broker.exists(LAST_USED_KEY)
    finally:
        broker.flushdb()
        broker.close()
        with Session(migrated_engine) as s:
            doomed = s.get(User, user.id)
            if doomed is not None:
                s.delete(doomed)
                s.commit()
