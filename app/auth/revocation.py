"""Revocation state in Redis: denied access-token ids, ended sessions, disabled users.

Access tokens are stateless, so revoking one before it expires needs a denylist
(docs/architecture.md). Entries live exactly as long as a token they could match, so the
denylist stays small. Every write also publishes the entry on `CHANNEL`, for the
per-process mirror `identify()` reads (revocation_mirror.py); without a trusted mirror
it reads all three keys with one MGET. Keys carry the user's hash tag (`{u:<id>}`), so on
a Redis Cluster they share a slot with the user's rate limits (`Denylist`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, cast

from flask import current_app, has_app_context
from redis import Redis

from app.auth.tokens import AccessClaims, TokenError
from app.core.errors import ErrorCode
from app.hotstore.client import HotClient
from app.hotstore.slots import tag

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

Entry = tuple[str, bytes, int]  # key, value, TTL in seconds


def _user(user_id: str) -> str:
    # The user's bucket as the rate limiter tags it (app/ratelimit/keys.py `subject`):
    # a token's revocation keys share the Cluster slot of its user's limits, so the
    # limiter's one script call can read them (app/auth/gates.py).
    return tag("u:" + user_id)


def jti_key(user_id: str, jti: str) -> str:
    """The key denying one access token."""
    return f"{DENY_JTI_PREFIX}{_user(user_id)}:{jti}"


def session_key(user_id: str, session_id: str) -> str:
    """The key denying every access token of one session (refresh-token family)."""
    return f"{DENY_SESSION_PREFIX}{_user(user_id)}:{session_id}"


def user_key(user_id: str) -> str:
    """The key holding a user's state (disabled, or tokens revoked before an instant)."""
    return USER_STATE_PREFIX + _user(user_id)


def _legacy(key: str) -> str:
    """The same entry's name in releases before hash tags (`sapi:auth:deny:jti:<jti>`)."""
    prefix, _, rest = key.partition("{u:")
    user, _, tail = rest.partition("}")
    if prefix == USER_STATE_PREFIX:
        return prefix + user
    return prefix + tail.lstrip(":")


@dataclass(frozen=True)
class Denylist:
    """Where the denylist lives: its entries and the channel announcing them.

    `announce` is REDIS_URL's client: the pub/sub channel, and, on one Redis, the entries
    too (each write's SETs and PUBLISHes in one MULTI). With a Redis Cluster the entries
    live on `cluster` (beside the limits the limiter's script reads with them) and are
    announced on REDIS_URL after they are written. Until `legacy_until` (epoch seconds)
    every write also stores the entry under its old name on REDIS_URL and every check
    reads both names, so processes of the previous release, which know only the old
    names, and this one agree during a rolling upgrade (docs/operations.md).
    """

    announce: Redis
    cluster: HotClient | None = None
    legacy_until: float | None = None

    @property
    def legacy(self) -> bool:
        """True while old key names are still written and read."""
        return self.legacy_until is not None and time.time() < self.legacy_until

    def read(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values of `keys` (one MGET; on a Cluster one per slot)."""
        if self.cluster is not None:
            return self.cluster.mget(keys)
        return cast(list[bytes | None], self.announce.mget(keys))


def _denylist(target: Denylist | Redis) -> Denylist:
    return target if isinstance(target, Denylist) else Denylist(announce=target)


def _message(key: str, value: bytes, ttl_ms: int) -> bytes:
    return key.encode() + b"\0" + str(ttl_ms).encode() + b"\0" + value


def parse_message(data: bytes) -> tuple[str, bytes, int] | None:
    """(key, value, ttl_ms) of a `CHANNEL` message, None when it is not one of ours."""
    key, sep, rest = data.partition(b"\0")
    ttl, sep2, value = rest.partition(b"\0")
    if not (sep and sep2 and ttl.isdigit()) or not key.decode().startswith(PREFIXES):
        return None
    return key.decode(), value, int(ttl)


def _write(target: Denylist | Redis, entries: Iterable[Entry]) -> None:
    """SET each entry with its TTL (seconds) and PUBLISH it, in order.

    On one Redis, atomically (one MULTI). On a Cluster the SETs go to the Cluster first and
    the announcements to REDIS_URL after: a failed announcement raises, and the caller's
    retry writes and announces again.
    """
    denylist = _denylist(target)
    rows = list(entries)
    legacy = [(_legacy(k), v, ttl) for k, v, ttl in rows] if denylist.legacy else []
    if denylist.cluster is not None:
        pipe = denylist.cluster.pipeline()
        for key, value, ttl in rows:
            pipe.set(key, value, ex=ttl)
        denylist.cluster.execute(pipe)
        announced, stored = rows + legacy, legacy
    else:
        announced, stored = rows + legacy, rows + legacy
    pipe = denylist.announce.pipeline(transaction=True)
    for key, value, ttl in stored:
        pipe.set(key, value, ex=ttl)
    for key, value, ttl in announced:
        pipe.publish(CHANNEL, _message(key, value, ttl * 1000))
    pipe.execute()
    if has_app_context():  # this process's own requests see it at once
        mirror = current_app.extensions.get(MIRROR_EXTENSION)
        if mirror is not None:
            for key, value, ttl in announced:
                mirror.note(key, value, ttl * 1000)


def deny_token(
    target: Denylist | Redis, *, user_id: str, jti: str, expires_at: int, leeway: int
) -> None:
    """Refuse the access token `jti` until it would have expired anyway."""
    ttl = max(1, expires_at + leeway - int(time.time()))
    _write(target, [(jti_key(user_id, jti), b"1", ttl)])


def deny_sessions(
    target: Denylist | Redis,
    *,
    sessions: list[tuple[str, str]],
    access_ttl: int,
    leeway: int,
) -> None:
    """Refuse every access token issued for these (user id, session id) pairs."""
    if not sessions:
        return
    ttl = access_ttl + leeway
    _write(target, [(session_key(user, sid), b"1", ttl) for user, sid in sessions])


def revoke_user_tokens(
    target: Denylist | Redis, *, user_id: str, disabled: bool, access_ttl: int, leeway: int
) -> None:
    """Refuse the user's access tokens issued up to now (disable, role change)."""
    marker = DISABLED if disabled else REVOKED_BEFORE
    value = marker + b":" + str(time.time()).encode()
    _write(target, [(user_key(user_id), value, access_ttl + leeway)])


def revocation_keys(claims: AccessClaims, *, legacy: bool = False) -> list[str]:
    """The keys whose existence revokes this token: its jti, its user, its session.

    With `legacy`, the same three under their old names follow (`Denylist`).
    """
    keys = [jti_key(claims.subject, claims.jti), user_key(claims.subject)]
    if claims.session_id:
        keys.append(session_key(claims.subject, claims.session_id))
    if legacy:
        keys.extend([_legacy(k) for k in keys])
    return keys


def check_revocation_values(claims: AccessClaims, values: list[bytes | None]) -> None:
    """Raise `TokenError` when the values read for `revocation_keys` revoke the token."""
    if len(values) in (4, 6):  # `legacy`: each entry under its new and its old name
        half = len(values) // 2
        values = [
            a if a is not None else b for a, b in zip(values[:half], values[half:], strict=True)
        ]
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


def check_access_token(target: Denylist | Redis, claims: AccessClaims) -> None:
    """Read the revocation keys (one MGET); raise `TokenError` when revoked."""
    denylist = _denylist(target)
    check_revocation_values(claims, denylist.read(revocation_keys(claims, legacy=denylist.legacy)))
