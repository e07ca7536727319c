"""Revocation state in Redis: denied access-token ids, ended sessions, disabled users.

Access tokens are stateless, so revoking one before it expires needs a denylist
(docs/architecture.md). Entries live exactly as long as a token they could match, so the
denylist stays small. `identify()` reads all three keys with one MGET.
"""

from __future__ import annotations

import time
from typing import Final, cast

from redis import Redis

from app.auth.tokens import AccessClaims, TokenError
from app.core.errors import ErrorCode

DENY_JTI_PREFIX: Final = "sapi:auth:deny:jti:"
DENY_SESSION_PREFIX: Final = "sapi:auth:deny:sid:"
USER_STATE_PREFIX: Final = "sapi:auth:user:"
DISABLED: Final = b"d"
REVOKED_BEFORE: Final = b"r"


def deny_token(redis: Redis, *, jti: str, expires_at: int, leeway: int) -> None:
    """Refuse the access token `jti` until it would have expired anyway."""
    ttl = max(1, expires_at + leeway - int(time.time()))
    redis.set(DENY_JTI_PREFIX + jti, b"1", ex=ttl)


def deny_sessions(redis: Redis, *, session_ids: list[str], access_ttl: int, leeway: int) -> None:
    """Refuse every access token issued for these sessions (refresh-token families)."""
    if not session_ids:
        return
    pipe = redis.pipeline(transaction=False)
    for sid in session_ids:
        pipe.set(DENY_SESSION_PREFIX + sid, b"1", ex=access_ttl + leeway)
    pipe.execute()


def revoke_user_tokens(
    redis: Redis, *, user_id: str, disabled: bool, access_ttl: int, leeway: int
) -> None:
    """Refuse the user's access tokens issued up to now (disable, role change)."""
    marker = DISABLED if disabled else REVOKED_BEFORE
    value = marker + b":" + str(time.time()).encode()
    redis.set(USER_STATE_PREFIX + user_id, value, ex=access_ttl + leeway)


def revocation_keys(claims: AccessClaims) -> list[str]:
    """The Redis keys whose existence revokes this token: its jti, its user, its session."""
    keys = [DENY_JTI_PREFIX + claims.jti, USER_STATE_PREFIX + claims.subject]
    if claims.session_id:
        keys.append(DENY_SESSION_PREFIX + claims.session_id)
    return keys


def check_revocation_values(claims: AccessClaims, values: list[bytes | None]) -> None:
    """Raise `TokenError` when the values read for `revocation_keys` revoke the token."""
    denied_jti, user_state = values[0], values[1]
    denied_session = values[2] if len(values) > 2 else None
    if user_state is not None:
        marker, _, since = bytes(user_state).partition(b":")
        if marker == DISABLED:
            raise TokenError(ErrorCode.AUTH_ACCOUNT_DISABLED, "The account is disabled.")
        # `iat` carries milliseconds, so tokens issued after the revocation pass.
        if claims.issued_at <= float(since or 0):
            raise TokenError(ErrorCode.AUTH_TOKEN_REVOKED, "The token was revoked.")
    if denied_jti is not None or denied_session is not None:
        raise TokenError(ErrorCode.AUTH_TOKEN_REVOKED, "The token was revoked.")


def check_access_token(redis: Redis, claims: AccessClaims) -> None:
    """Read the revocation keys with one MGET; raise `TokenError` when revoked."""
    values = cast(list[bytes | None], redis.mget(revocation_keys(claims)))
    check_revocation_values(claims, values)
