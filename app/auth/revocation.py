"""Revocation state in Redis: denied access-token ids, ended sessions, disabled users.

Access tokens are stateless, so revoking one before it expires needs a denylist
(docs/architecture.md). Entries live exactly as long as a token they could match, so the
denylist stays small. Every write also publishes the entry on `CHANNEL` in the same
MULTI, for the per-process mirror `identify()` reads (revocation_mirror.py); without a
trusted mirror it reads all three keys with one MGET.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Final, cast

from flask import current_app, has_app_context
from redis import Redis

from app.auth.tokens import AccessClaims, TokenError
from app.core.errors import ErrorCode

DENY_JTI_PREFIX: Final = "sapi:auth:deny:jti:"
DENY_SESSION_PREFIX: Final = "sapi:auth:deny:sid:"
USER_STATE_PREFIX: Final = "sapi:auth:user:"
DISABLED: Final = b"d"
REVOKED_BEFORE: Final = b"r"
#: Pub/sub channel of every denylist write: `key NUL ttl_ms NUL value`.
CHANNEL: Final = "sapi:auth:revocations"
#: Every key prefix of the denylist (what the mirror loads).
PREFIXES: Final = (DENY_JTI_PREFIX, DENY_SESSION_PREFIX, USER_STATE_PREFIX)
MIRROR_EXTENSION: Final = "revocation_mirror"  # app.extensions key of this process's mirror


def _message(key: str, value: bytes, ttl_ms: int) -> bytes:
    return key.encode() + b"\0" + str(ttl_ms).encode() + b"\0" + value


def parse_message(data: bytes) -> tuple[str, bytes, int] | None:
    """(key, value, ttl_ms) of a `CHANNEL` message, None when it is not one of ours."""
    key, sep, rest = data.partition(b"\0")
    ttl, sep2, value = rest.partition(b"\0")
    if not (sep and sep2 and ttl.isdigit()) or not key.decode().startswith(PREFIXES):
        return None
    return key.decode(), value, int(ttl)


def _write(redis: Redis, entries: Iterable[tuple[str, bytes, int]]) -> None:
    """SET each entry with its TTL (seconds) and PUBLISH it, atomically and in order."""
    rows = list(entries)
    pipe = redis.pipeline(transaction=True)
    for key, value, ttl in rows:
        pipe.set(key, value, ex=ttl)
        pipe.publish(CHANNEL, _message(key, value, ttl * 1000))
    pipe.execute()
    if has_app_context():  # this process's own requests see it at once
        mirror = current_app.extensions.get(MIRROR_EXTENSION)
        if mirror is not None:
            for key, value, ttl in rows:
                mirror.note(key, value, ttl * 1000)


def deny_token(redis: Redis, *, jti: str, expires_at: int, leeway: int) -> None:
    """Refuse the access token `jti` until it would have expired anyway."""
    ttl = max(1, expires_at + leeway - int(time.time()))
    _write(redis, [(DENY_JTI_PREFIX + jti, b"1", ttl)])


def deny_sessions(redis: Redis, *, session_ids: list[str], access_ttl: int, leeway: int) -> None:
    """Refuse every access token issued for these sessions (refresh-token families)."""
    if not session_ids:
        return
    _write(redis, [(DENY_SESSION_PREFIX + sid, b"1", access_ttl + leeway) for sid in session_ids])


def revoke_user_tokens(
    redis: Redis, *, user_id: str, disabled: bool, access_ttl: int, leeway: int
) -> None:
    """Refuse the user's access tokens issued up to now (disable, role change)."""
    marker = DISABLED if disabled else REVOKED_BEFORE
    value = marker + b":" + str(time.time()).encode()
    _write(redis, [(USER_STATE_PREFIX + user_id, value, access_ttl + leeway)])


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
