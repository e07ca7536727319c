"""API keys: create (shown once), list, revoke, resolve on a cache miss, flush last-used."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, bindparam, func, update
from sqlmodel import Session, col, select

from app.auth.apikey_cache import ApiKeyCache, RejectedKey, ResolvedKey
from app.auth.caller import ADMIN_SCOPE_PREFIX, Role, effective_roles
from app.auth.models.api_key import ApiKey
from app.auth.models.user import User
from app.auth.opaque import digest, display_prefix, new_api_key
from app.auth.state import AuthState
from app.core.db import session_scope
from app.core.errors import Conflict, ErrorCode, Forbidden, NotFound
from app.core.models import utcnow

log = logging.getLogger("structured_api.auth")


def _active(now: datetime) -> list[ColumnElement[bool]]:
    return [
        col(ApiKey.revoked_at).is_(None),
        col(ApiKey.expires_at).is_(None) | (col(ApiKey.expires_at) > now),
    ]


def create_api_key(
    *,
    session: Session,
    auth: AuthState,
    user_id: uuid.UUID,
    name: str,
    scopes: list[str],
    expires_in_days: int | None = None,
) -> tuple[ApiKey, str]:
    """Create a key for `user_id`; returns the row and the key in clear (shown once)."""
    # Lock the owner so two concurrent creations cannot both pass the cap.
    user = session.exec(select(User).where(User.id == user_id).with_for_update()).first()
    if user is None or not user.is_active:
        raise Forbidden(code=ErrorCode.AUTH_ACCOUNT_DISABLED)
    admin_scopes = [s for s in scopes if s.startswith(ADMIN_SCOPE_PREFIX)]
    if admin_scopes and Role.ADMIN not in effective_roles(frozenset(user.roles)):
        raise Forbidden(
            "Only admins may create keys with admin scopes.",
            details={"scopes": admin_scopes},
        )
    now = utcnow()
    cap = auth.settings.api_key_max_per_user
    count = session.exec(
        select(func.count()).select_from(ApiKey).where(ApiKey.user_id == user_id, *_active(now))
    ).one()
    if count >= cap:
        raise Conflict(
            f"You already hold {cap} active API keys; revoke one first.", details={"limit": cap}
        )
    key = new_api_key()
    row = ApiKey(
        user_id=user_id,
        name=name,
        prefix=display_prefix(key),
        key_hash=digest(key),
        scopes=sorted(set(scopes)),
        expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    session.add(row)
    session.commit()
    session.refresh(row)
    log.info("api key created", extra={"key_id": str(row.id), "user_id": str(user_id)})
    return row, key


def list_api_keys(*, session: Session, user_id: uuid.UUID) -> list[ApiKey]:
    """The user's active keys, newest first."""
    rows = session.exec(
        select(ApiKey)
        .where(ApiKey.user_id == user_id, *_active(utcnow()))
        .order_by(col(ApiKey.created_at).desc())
    ).all()
    return list(rows)


def revoke_api_key(
    *, session: Session, auth: AuthState, key_id: uuid.UUID, user_id: uuid.UUID | None
) -> ApiKey:
    """Revoke a key (idempotent); with `user_id`, another user's key is `NotFound`.

    The Redis tombstone is written before the commit, so from the moment this returns
    no process accepts the key, including one whose cache fill read the row before the
    commit (app/auth/apikey_cache.py). Redis unreachable: the `RedisError`
    propagates (503 `SYS_CACHE_UNAVAILABLE`) and nothing is committed, so the caller
    knows the key is still live instead of believing a revoke that caches may ignore.
    """
    row = session.get(ApiKey, key_id)
    if row is None or (user_id is not None and row.user_id != user_id):
        raise NotFound(f"API key {key_id} does not exist.")
    if row.revoked_at is not None:
        auth.api_keys.forget([row.key_hash])
        return row
    # A commit that fails after this leaves the tombstone in place: the key stays
    # refused for the tombstone's lifetime, which is what its owner asked for, and a
    # failure after the commit reached PostgreSQL cannot leave the key live.
    auth.api_keys.tombstone(row.key_hash)
    row.revoked_at = utcnow()
    session.add(row)
    session.commit()
    log.info("api key revoked", extra={"key_id": str(row.id), "user_id": str(row.user_id)})
    return row


def forget_user_keys(*, session: Session, auth: AuthState, user_id: uuid.UUID) -> None:
    """Drop cached entries of a user's keys and fence off stale fills (after the commit)."""
    hashes = session.exec(select(ApiKey.key_hash).where(ApiKey.user_id == user_id)).all()
    auth.api_keys.forget(list(hashes))


def resolve_api_key(*, session: Session, key_hash: str) -> ResolvedKey | RejectedKey:
    """Look a key digest up in PostgreSQL (the cache-miss path of `identify`)."""
    row = session.exec(
        select(ApiKey, User)
        .join(User, col(User.id) == col(ApiKey.user_id))
        .where(ApiKey.key_hash == key_hash)
    ).first()
    if row is None:
        return RejectedKey(ErrorCode.AUTH_INVALID_TOKEN)
    key, user = row
    if key.revoked_at is not None:
        return RejectedKey(ErrorCode.AUTH_TOKEN_REVOKED)
    if not user.is_active:
        return RejectedKey(ErrorCode.AUTH_ACCOUNT_DISABLED)
    return ResolvedKey(
        key_id=str(key.id),
        user_id=str(user.id),
        roles=frozenset(user.roles),
        scopes=frozenset(key.scopes),
        expires_at=key.expires_at.timestamp() if key.expires_at else None,
    )


def resolve_for_cache(key_hash: str) -> ResolvedKey | RejectedKey:
    """`resolve_api_key` in its own short session (wired into `AuthState`)."""
    with session_scope() as session:
        return resolve_api_key(session=session, key_hash=key_hash)


def flush_last_used(*, session: Session, cache: ApiKeyCache) -> int:
    """Write buffered last-used times to PostgreSQL; returns how many keys were updated."""
    batch_key, times = cache.take_last_used(uuid.uuid4().hex)
    rows = []
    for key_id, ts in times.items():
        try:
            rows.append({"kid": uuid.UUID(key_id), "ts": datetime.fromtimestamp(ts, UTC)})
        except ValueError:
            continue
    if not rows:
        cache.done(batch_key)
        return 0
    try:
        # GREATEST ignores NULL and keeps a newer time written by a concurrent flush.
        stmt = (
            update(ApiKey)
            .where(col(ApiKey.id) == bindparam("kid"))
            .values(last_used_at=func.greatest(col(ApiKey.last_used_at), bindparam("ts")))
        )
        session.connection().execute(stmt, rows)
        session.commit()
    except Exception:
        session.rollback()
        cache.put_back(batch_key)
        raise
    cache.done(batch_key)
    return len(rows)


def list_all_keys(*, session: Session, email: str | None = None) -> list[tuple[ApiKey, str]]:
    """Every key with its owner's email (CLI), optionally for one owner."""
    query = select(ApiKey, User.email).join(User, col(User.id) == col(ApiKey.user_id))
    if email:
        query = query.where(User.email == email)
    rows = session.exec(query.order_by(col(ApiKey.created_at))).all()
    return [(key, owner) for key, owner in rows]
