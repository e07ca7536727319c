"""Denylist key names: hash-tagged by user, and the old names honoured during an upgrade.

Against a real Redis: what a previous release wrote under the old names still revokes a
token while `legacy_until` lies ahead, and what this release writes meanwhile is also
readable under the old names (a pod of the previous release checks only those).
"""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from app.auth import revocation
from app.auth.revocation import Denylist
from app.auth.tokens import AccessClaims, TokenError
from app.core.errors import ErrorCode
from app.hotstore.slots import slot
from app.ratelimit.keys import KEY_PREFIX


def claims(user: str, *, session: str | None = "s1") -> AccessClaims:
    now = time.time()
    return AccessClaims(
        subject=user,
        roles=frozenset({"user"}),
        jti=uuid.uuid4().hex,
        session_id=session,
        issued_at=now,
        expires_at=int(now) + 900,
    )


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    c = redis.Redis.from_url(redis_url)
    c.flushdb()
    return c


def test_a_tokens_revocation_keys_share_the_slot_of_its_users_rate_limit_buckets() -> None:
    token = claims("7f0c")
    limit = f"{KEY_PREFIX}{{u:7f0c}}:free:all:1m"
    assert {slot(k) for k in revocation.revocation_keys(token)} == {slot(limit)}


def test_an_entry_under_its_old_name_revokes_while_legacy_until_lies_ahead(
    client: redis.Redis,
) -> None:
    token = claims("u-old")
    client.set(revocation.DENY_JTI_PREFIX + token.jti, b"1", ex=60)  # previous release
    upgrading = Denylist(announce=client, legacy_until=time.time() + 60)
    with pytest.raises(TokenError) as caught:
        revocation.check_access_token(upgrading, token)
    assert caught.value.code == ErrorCode.AUTH_TOKEN_REVOKED
    revocation.check_access_token(Denylist(announce=client), token)  # after: new names only


def test_writes_during_the_upgrade_land_under_both_names(client: redis.Redis) -> None:
    user, token = "u-both", claims("u-both")
    upgrading = Denylist(announce=client, legacy_until=time.time() + 60)
    revocation.revoke_user_tokens(upgrading, user_id=user, disabled=True, access_ttl=900, leeway=5)
    assert client.get(revocation.user_key(user)) is not None
    assert client.get(revocation.USER_STATE_PREFIX + user) is not None  # the old name
    for denylist in (upgrading, Denylist(announce=client)):
        with pytest.raises(TokenError) as caught:
            revocation.check_access_token(denylist, token)
        assert caught.value.code == ErrorCode.AUTH_ACCOUNT_DISABLED


def test_after_the_upgrade_window_only_the_new_names_are_written(client: redis.Redis) -> None:
    done = Denylist(announce=client, legacy_until=time.time() - 1)
    revocation.deny_sessions(done, sessions=[("u-new", "s9")], access_ttl=900, leeway=5)
    assert client.exists(revocation.session_key("u-new", "s9")) == 1
    assert client.exists(revocation.DENY_SESSION_PREFIX + "s9") == 0
