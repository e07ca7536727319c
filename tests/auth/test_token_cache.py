"""Verified access tokens are cached per key ring, never past `exp` or across rings."""

from __future__ import annotations

import time

import pytest
from flask import Flask

from app.auth.keys import KeyRing
from app.auth.tokens import TokenError, issue_access_token, verify_access_token
from app.core.errors import ErrorCode


def _ring(app_keyring: KeyRing) -> KeyRing:
    return KeyRing(
        signing_key=app_keyring.signing_key,
        current=app_keyring.current,
        by_kid=dict(app_keyring.by_kid),
    )


def test_a_verified_token_is_served_from_the_rings_cache(app: Flask) -> None:
    from app.auth.state import auth_state

    ring = _ring(auth_state().keyring)
    token, _ = issue_access_token(
        keyring=ring,
        issuer="i",
        audience="a",
        ttl=60,
        subject="u1",
        roles=["user"],
        session_id=None,
    )
    first = verify_access_token(token, keyring=ring, issuer="i", audience="a", leeway=0)
    assert ring.verified  # cached
    assert verify_access_token(token, keyring=ring, issuer="i", audience="a", leeway=0) is first
    other = _ring(auth_state().keyring)
    assert not other.verified  # a fresh ring starts empty: nothing crosses over


def test_a_cached_token_still_expires(app: Flask) -> None:
    from app.auth.state import auth_state

    ring = _ring(auth_state().keyring)
    token, claims = issue_access_token(
        keyring=ring,
        issuer="i",
        audience="a",
        ttl=2,
        subject="u1",
        roles=["user"],
        session_id=None,
    )
    verify_access_token(token, keyring=ring, issuer="i", audience="a", leeway=0)
    assert ring.verified
    time.sleep(max(0.0, claims.expires_at - time.time()) + 0.3)
    with pytest.raises(TokenError) as caught:
        verify_access_token(token, keyring=ring, issuer="i", audience="a", leeway=0)
    assert caught.value.code is ErrorCode.AUTH_TOKEN_EXPIRED
    assert not ring.verified
