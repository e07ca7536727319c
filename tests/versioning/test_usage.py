"""Requests per version and caller: counted in memory per request, flushed to Redis in
one round trip per interval, never a credential, a bounded set of callers per flush."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from devstack import RedisServer
from flask import Flask
from flask.testing import FlaskClient
from sqlmodel import Session

from app.auth import api_keys
from app.auth import sessions as auth_service
from app.auth.caller import Caller
from app.auth.models.user import User
from app.auth.state import auth_state
from app.settings import Settings
from app.versioning import usage
from tests.support.processes import free_port

NOW = 1_790_000_000.0  # a fixed flush time: every assertion reads one minute's keys
MINUTE = int(NOW // 60)
PROBE = "/v1/limits/me"


def new_user(session: Session) -> User:
    """A committed user (role `user`)."""
    user = User(email=f"u-{secrets.token_hex(6)}@example.com", password_hash="x", roles=["user"])
    session.add(user)
    session.commit()
    return user


def bearer(session: Session, user: User) -> str:
    """A fresh access token of `user`."""
    tokens = auth_service.start_session(
        session=session, auth=auth_state(), user=user, ip="127.0.0.1", user_agent="pytest"
    )
    return tokens.access_token


def scores(r: redis.Redis, key: str) -> dict[str, int]:
    """Members of a sorted set and their scores."""
    return {m.decode(): int(s) for m, s in r.zrange(key, 0, -1, withscores=True)}


def test_requests_of_two_callers_are_counted_per_version_and_caller_after_a_flush(
    app: Flask, client: FlaskClient, session: Session, redis_url: str
) -> None:
    alice = new_user(session)
    token = bearer(session, alice)
    key_row, key = api_keys.create_api_key(
        session=session,
        auth=auth_state(),
        user_id=new_user(session).id,
        name="usage",
        scopes=["limits:read"],
    )
    calls = [
        ({"Authorization": f"Bearer {token}"}, 7, 200),
        ({"X-API-Key": key}, 5, 200),
        ({}, 2, 401),  # counted too: the version stage runs before the view's auth check
    ]
    for headers, n, status in calls:
        for _ in range(n):
            assert client.get(PROBE, headers=headers).status_code == status
    for _ in range(3):
        assert client.get("/v2/limits/me", headers={"X-API-Key": key}).status_code == 200

    assert usage.counter_of(app).flush(now=NOW) is True
    r = redis.Redis.from_url(redis_url)
    assert r.get(usage.total_key("v1", MINUTE)) == b"14"
    assert scores(r, usage.callers_key("v1", MINUTE)) == {
        f"user:{alice.id}": 7,
        f"api_key:{key_row.id}": 5,
        "anonymous": 2,
    }
    assert r.get(usage.total_key("v2", MINUTE)) == b"3"
    assert scores(r, usage.callers_key("v2", MINUTE)) == {f"api_key:{key_row.id}": 3}
    assert 3600 < r.ttl(usage.total_key("v1", MINUTE)) <= usage.USAGE_TTL_SECONDS
    assert 3600 < r.ttl(usage.callers_key("v1", MINUTE)) <= usage.USAGE_TTL_SECONDS
    assert usage.counter_of(app).pending() == {}


def test_tokens_and_api_keys_never_appear_in_usage_keys_or_members(
    app: Flask, client: FlaskClient, session: Session, redis_url: str
) -> None:
    token = bearer(session, new_user(session))
    _, key = api_keys.create_api_key(
        session=session,
        auth=auth_state(),
        user_id=new_user(session).id,
        name="usage",
        scopes=["limits:read"],
    )
    client.get(PROBE, headers={"Authorization": f"Bearer {token}"})
    client.get(PROBE, headers={"X-API-Key": key})
    usage.counter_of(app).flush(now=NOW)

    r = redis.Redis.from_url(redis_url)
    stored = []
    for name in r.scan_iter("sapi:usage*"):
        stored.append(name.decode())
        if r.type(name) == b"zset":
            stored += [m.decode() for m in r.zrange(name, 0, -1)]
    assert len(stored) == 4  # total + callers, with two members
    secrets_seen = [s for s in stored for secret in (token, key) if secret in s or s in secret]
    assert secrets_seen == []
    assert {s.split(":")[0] for s in stored if ":" in s} >= {"user", "api_key"}


def test_the_caller_name_is_the_rate_limiters_key() -> None:
    cases = [
        Caller(kind="user", subject="17", token_id="jti-secret"),
        Caller(kind="api_key", subject="17", key_id="k-9"),
    ]
    for caller in cases:
        assert usage.caller_name(caller.kind, caller.key_id or caller.subject) == (
            caller.rate_limit_key
        )
    assert usage.caller_name("anonymous", None) == usage.ANONYMOUS


def test_a_flush_keeps_the_busiest_hundred_callers_per_version_and_folds_the_rest_into_other(
    app: Flask, redis_url: str
) -> None:
    # 250 distinct callers, caller i calling i + 1 times: 31375 requests in all.
    for i in range(250):
        for _ in range(i + 1):
            usage.record(app, "1.0", Caller(kind="user", subject=str(i)))
    assert usage.counter_of(app).flush(now=NOW)

    r = redis.Redis.from_url(redis_url)
    members = scores(r, usage.callers_key("v1", MINUTE))
    assert len(members) == usage.MAX_CALLERS_PER_FLUSH + 1
    assert {f"user:{i}" for i in range(150, 250)} | {usage.OTHER} == set(members)
    assert members[usage.OTHER] == sum(range(1, 151))
    assert sum(members.values()) == int(r.get(usage.total_key("v1", MINUTE)) or 0) == 31375


@pytest.mark.parametrize(
    ("callers", "expected"),
    [
        ({"a": 3, "b": 2}, {"a": 3, "b": 2}),
        ({"a": 3, "b": 2, "c": 1}, {"a": 3, "b": 2, "other": 1}),
        ({"a": 3, "b": 2, "c": 1, "other": 4}, {"a": 3, "b": 2, "other": 5}),
        ({"a": 1, "other": 9}, {"a": 1, "other": 9}),
    ],
)
def test_bound_keeps_totals_and_never_counts_other_as_a_caller(
    callers: dict[str, int], expected: dict[str, int]
) -> None:
    assert usage.bound(callers, limit=2) == expected


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, on a fixed port, so it can be stopped and started."""
    server = RedisServer(tmp_path / "redis", port=free_port())
    server.start()
    yield server
    if server.running:
        server.stop()


def test_counting_never_waits_for_redis_and_a_failed_flush_is_retried_with_the_next(
    own_redis: RedisServer, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from app.factory import create_app

    app = create_app(Settings(app_env="test", database_url=database_url, redis_url=own_redis.url))
    counter = usage.counter_of(app)
    usage.record(app, "1.0", Caller(kind="user", subject="a"))
    assert counter.flush(now=NOW)
    own_redis.stop()

    began = time.perf_counter()
    for _ in range(1000):
        usage.record(app, "1.0", Caller(kind="user", subject="a"))
    usage.record(app, "1.0", None)
    assert time.perf_counter() - began < 0.1  # Redis is never on this path
    caplog.set_level(logging.WARNING, logger="structured_api.versioning.usage")
    assert counter.flush(now=NOW) is False
    assert "API usage flush failed (ConnectionError); retrying next flush" in caplog.text
    usage.record(app, "1.0", None)

    own_redis.start()
    assert counter.flush(now=NOW) is True
    r = redis.Redis.from_url(own_redis.url)  # restarted empty: only what was kept
    assert r.get(usage.total_key("v1", MINUTE)) == b"1002"
    assert scores(r, usage.callers_key("v1", MINUTE)) == {"user:a": 1000, "anonymous": 2}
    counter.stop()
