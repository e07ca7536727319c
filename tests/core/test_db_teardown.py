"""A request whose PostgreSQL connection dies before teardown still gets its own answer.

Found by tests/chaos: PostgreSQL terminated the backend of a request that had already
produced its response; the ROLLBACK that `Session.close()` sends in teardown failed,
the exception left the WSGI app and gunicorn answered a bare 500 instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
import sqlalchemy as sa
from flask import Flask
from sqlalchemy import Engine

from app.core.db import get_session
from app.core.responses import ok
from app.factory import create_app
from app.settings import Settings


@pytest.fixture
def real_sessions_app(settings: Settings, redis_url: str) -> Iterator[Flask]:
    """An app with production sessions (no per-test savepoint), and a view that loses
    its own database connection half way through the request."""
    application = create_app(settings)
    redis.Redis.from_url(redis_url).flushdb()

    @application.get("/test/lose-connection")
    def lose_connection():  # type: ignore[no-untyped-def]
        session = get_session()
        pid = session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        engine = application.extensions["db"]
        with engine.connect() as other:
            other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        return ok({"terminated": pid})

    yield application
    application.extensions["config_store"].stop()
    application.extensions["db"].dispose()


def test_a_connection_killed_before_teardown_does_not_turn_the_answer_into_a_500(
    real_sessions_app: Flask, migrated_engine: Engine
) -> None:
    client = real_sessions_app.test_client()
    response = client.get("/test/lose-connection")
    assert response.status_code == 200
    assert response.get_json()["success"] is True
    # The dead connection was discarded, not returned to the pool: the next request works.
    with real_sessions_app.app_context():
        assert get_session().execute(sa.text("SELECT 1")).scalar_one() == 1
