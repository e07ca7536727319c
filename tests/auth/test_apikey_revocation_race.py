"""Revoking an API key wins against a cache fill that read the key just before the revoke.

A request with an uncached key reads the key's row from PostgreSQL, then writes the
answer to the Redis cache. If a revoke commits (and drops the entry) in between, the
write puts a live entry back for `API_KEY_CACHE_TTL`. The fill here is paused between
its read and its write (a wrapper around `AuthState.resolve_api_key`, which the real
resolver runs inside), the revoke runs through the API, then the fill resumes.
The same race across two gunicorn workers is in test_live_auth_races.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from sqlmodel import Session
from werkzeug.test import TestResponse

from app.auth import api_keys as key_service
from app.auth.apikey_cache import CACHE_PREFIX, FENCE_PREFIX, RejectedKey, ResolvedKey
from app.auth.models.api_key import ApiKey
from app.auth.state import EXTENSION, AuthState
from tests.auth.conftest import Account, bearer, error_code
from tests.support.processes import free_port

ME = "/v1/auth/me"
LIMITS = "/v1/limits/me"
KEYS = "/v1/auth/api-keys"
WAIT = 10.0


class PausedFill:
    """Wraps the resolver: the next fill stops after its database read until released."""

    def __init__(self, resolve: Callable[[str], ResolvedKey | RejectedKey]) -> None:
        self._resolve = resolve
        self.read_done = threading.Event()
        self.release = threading.Event()

    def __call__(self, key_hash: str) -> ResolvedKey | RejectedKey:
        """Read the row, then wait (once) before the caller writes the cache."""
        entry = self._resolve(key_hash)
        if not self.read_done.is_set():
            self.read_done.set()
            assert self.release.wait(WAIT), "the test never released the fill"
        return entry


@pytest.fixture
def paused(auth: AuthState, monkeypatch: pytest.MonkeyPatch) -> Iterator[PausedFill]:
    """The app's key resolver, pausable."""
    fill = PausedFill(auth.resolve_api_key)
    monkeypatch.setattr(auth, "resolve_api_key", fill)
    yield fill
    fill.release.set()


def _in_thread(call: Callable[[], TestResponse]) -> tuple[threading.Thread, list[TestResponse]]:
    out: list[TestResponse] = []
    thread = threading.Thread(target=lambda: out.append(call()), daemon=True)
    thread.start()
    return thread, out


def test_a_fill_that_read_the_key_before_the_revoke_does_not_bring_it_back(
    client: FlaskClient, make_user: Any, make_key: Any, issue: Any, paused: PausedFill
) -> None:
    owner: Account = make_user()
    token = issue(owner).access_token
    row, key = make_key(owner, ["profile:read"])
    # One connection serves the test's transaction: the threads take turns on it (the
    # fill is paused after its read; the revoke runs; the fill only writes Redis after).
    thread, in_flight = _in_thread(lambda: client.get(ME, headers={"X-API-Key": key}))
    assert paused.read_done.wait(WAIT)

    revoked = client.delete(f"{KEYS}/{row.id}", headers=bearer(token))
    paused.release.set()
    thread.join(WAIT)

    assert revoked.status_code == 200
    # The in-flight request read a live row, but its cache write met the tombstone.
    assert in_flight[0].status_code == 401
    assert error_code(in_flight[0]) == "AUTH_TOKEN_REVOKED"
    after = client.get(ME, headers={"X-API-Key": key})
    assert after.status_code == 401
    assert error_code(after) == "AUTH_TOKEN_REVOKED"
    assert 'error="invalid_token"' in after.headers["WWW-Authenticate"]


def test_a_fill_that_read_the_owner_before_a_disable_reads_again(
    client: FlaskClient, make_user: Any, make_key: Any, issue: Any, paused: PausedFill
) -> None:
    owner: Account = make_user()
    admin = issue(make_user(roles=("admin",))).access_token
    _, key = make_key(owner, ["limits:read"])
    # A route that trusts the resolved key alone (`/me` reloads the user from PostgreSQL).
    thread, in_flight = _in_thread(lambda: client.get(LIMITS, headers={"X-API-Key": key}))
    assert paused.read_done.wait(WAIT)

    changed = client.patch(
        f"/v1/admin/users/{owner.user.id}", json={"disabled": True}, headers=bearer(admin)
    )
    paused.release.set()
    thread.join(WAIT)

    assert changed.status_code == 200
    # The fence moved while the fill read: it read the row again and saw the disable.
    assert error_code(in_flight[0]) == "AUTH_ACCOUNT_DISABLED"
    assert error_code(client.get(LIMITS, headers={"X-API-Key": key})) == "AUTH_ACCOUNT_DISABLED"


def test_a_tombstone_refuses_a_live_entry_left_by_a_writer_that_ignores_fences(
    client: FlaskClient, make_user: Any, make_key: Any, auth: AuthState
) -> None:
    owner: Account = make_user()
    row, key = make_key(owner, ["profile:read"])
    assert client.get(ME, headers={"X-API-Key": key}).status_code == 200  # cached
    entry = auth.redis.get(CACHE_PREFIX + row.key_hash)
    assert entry is not None
    auth.api_keys.tombstone(row.key_hash)
    # e.g. a worker of the previous release filling during a rolling deploy
    auth.redis.set(CACHE_PREFIX + row.key_hash, entry, ex=300)

    response = client.get(ME, headers={"X-API-Key": key})

    assert error_code(response) == "AUTH_TOKEN_REVOKED"
    assert auth.redis.get(CACHE_PREFIX + row.key_hash) is None
    assert 0 < int(auth.redis.ttl(FENCE_PREFIX + row.key_hash)) <= auth.api_keys.fence_ttl
    assert auth.api_keys.fence_ttl >= auth.settings.api_key_cache_ttl


def test_a_revoke_while_redis_is_down_fails_loudly_and_commits_nothing(
    app: Any, client: FlaskClient, make_user: Any, make_key: Any, session: Session
) -> None:
    owner: Account = make_user()
    row, key = make_key(owner, ["profile:read"])
    real: AuthState = app.extensions[EXTENSION]
    # A real client on a port nothing listens on: every command is refused.
    down = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    unreachable = AuthState(
        settings=real.settings,
        keyring=real.keyring,
        passwords=real.passwords,
        resolve_api_key=real.resolve_api_key,
        extensions={**app.extensions, "redis": down},
    )

    with pytest.raises(redis.ConnectionError):
        key_service.revoke_api_key(
            session=session, auth=unreachable, key_id=row.id, user_id=owner.user.id
        )

    session.expire_all()
    fresh = session.get(ApiKey, row.id)
    assert fresh is not None and fresh.revoked_at is None  # the caller was not misled
    assert client.get(ME, headers={"X-API-Key": key}).status_code == 200
