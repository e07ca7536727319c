"""The per-process denylist mirror (app/auth/revocation_mirror.py) on real Redis servers:
it answers without Redis while fresh, sees other processes' revocations within its bound,
and stops answering (identify then reads Redis, failing closed) when it cannot be trusted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from devstack import RedisServer
from flask import Flask
from sqlalchemy import Connection

from app.auth import gates, revocation
from app.auth.identify import identify
from app.auth.revocation_mirror import STALE_AFTER, RevocationMirror
from app.auth.state import AuthState
from app.settings import Settings
from tests.auth.conftest import Account, bearer, build_app, error_code
from tests.support.processes import wait_for


@pytest.fixture
def account(make_user: Any) -> Account:
    """A plain user."""
    acct: Account = make_user()
    return acct


@pytest.fixture
def mirror_app(settings: Settings, connection: Connection) -> Iterator[Flask]:
    """The test app with the mirror on (the shared fixture turns it off)."""
    app = build_app(settings.model_copy(update={"revocation_mirror_enabled": True}), connection)
    yield app
    mirror = app.extensions.get(revocation.MIRROR_EXTENSION)
    if mirror is not None:
        mirror.stop()


def trusted_mirror(app: Flask) -> RevocationMirror:
    state: AuthState = app.extensions["auth"]
    mirror = state.mirror
    assert mirror is not None
    mirror.values([])  # starts the thread
    wait_for(lambda: mirror.trusted, timeout=10, interval=0.02, what="a trusted mirror")
    return mirror


def test_a_trusted_mirror_checks_a_token_without_deferring_a_redis_read(
    mirror_app: Flask, account: Account, issue: Any
) -> None:
    token = issue(account).access_token
    trusted_mirror(mirror_app)
    with mirror_app.test_request_context("/v1/auth/me", headers=bearer(token)):
        identify()
        assert not gates.pending()  # nothing left for the limiter's round trip to read
    assert mirror_app.test_client().get("/v1/auth/me", headers=bearer(token)).status_code == 200


def test_a_revocation_written_by_another_process_is_refused_within_the_bound(
    mirror_app: Flask, account: Account, issue: Any, redis_url: str
) -> None:
    issued = issue(account)
    client = mirror_app.test_client()
    trusted_mirror(mirror_app)
    assert client.get("/v1/auth/me", headers=bearer(issued.access_token)).status_code == 200
    other = redis.Redis.from_url(redis_url)  # another process: no app, no local mirror
    started = time.monotonic()
    revocation.revoke_user_tokens(
        other, user_id=str(account.user.id), disabled=False, access_ttl=900, leeway=5
    )

    def refused() -> bool:
        return client.get("/v1/auth/me", headers=bearer(issued.access_token)).status_code == 401

    wait_for(refused, timeout=STALE_AFTER, interval=0.005, what="the revocation in the mirror")
    assert time.monotonic() - started < STALE_AFTER
    response = client.get("/v1/auth/me", headers=bearer(issued.access_token))
    assert error_code(response) == "AUTH_TOKEN_REVOKED"


def test_revocations_written_before_the_mirror_started_are_loaded(
    mirror_app: Flask, account: Account, issue: Any, redis_url: str
) -> None:
    token = issue(account).access_token
    revocation.revoke_user_tokens(
        redis.Redis.from_url(redis_url),
        user_id=str(account.user.id),
        disabled=True,
        access_ttl=900,
        leeway=5,
    )
    trusted_mirror(mirror_app)
    response = mirror_app.test_client().get("/v1/auth/me", headers=bearer(token))
    assert response.status_code == 403
    assert error_code(response) == "AUTH_ACCOUNT_DISABLED"


def test_a_mirror_whose_redis_dies_stops_answering_within_its_bound(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    mirror = RevocationMirror(server.url, timeout=0.2)
    try:
        assert mirror.values(["k"]) is None  # not loaded yet: never trusted blindly
        wait_for(lambda: mirror.trusted, timeout=10, interval=0.02, what="a trusted mirror")
        assert mirror.values([revocation.DENY_JTI_PREFIX + "x"]) == [None]
        server.kill()
        killed = time.monotonic()
        wait_for(lambda: not mirror.trusted, timeout=5, interval=0.02, what="distrust")
        assert time.monotonic() - killed <= STALE_AFTER + 0.5
        assert mirror.values(["k"]) is None
    finally:
        mirror.stop()
        server.stop()


def test_identify_fails_closed_when_neither_the_mirror_nor_redis_can_answer(
    settings: Settings, connection: Connection, account: Account, issue: Any
) -> None:
    from tests.support.processes import free_port

    down = settings.model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",
            "revocation_mirror_enabled": True,
        }
    )
    app = build_app(down, connection)
    token = issue(account).access_token
    try:
        response = app.test_client().get("/v1/auth/me", headers=bearer(token))
        assert response.status_code == 503
        assert error_code(response) == "SYS_CACHE_UNAVAILABLE"
    finally:
        app.extensions[revocation.MIRROR_EXTENSION].stop()
