"""Sessions and tokens: login, refresh with rotation and reuse detection, logout.

Each login starts a session (a refresh-token family). Every refresh marks the
presented token used and issues its successor. Presenting a used token again after
the grace window means two parties hold the family, so the whole family is revoked
(RFC 9700 section 4.14.2). Within the window it is taken as a client's concurrent
refresh and answered with the same successor the first presentation got (derived
from the token, app/auth/opaque.py), so a session never forks into two live
chains.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete
from sqlmodel import Session, col, select

from app.auth.caller import Caller
from app.auth.models.session import AuthSession, RefreshToken
from app.auth.models.user import User
from app.auth.opaque import digest, new_refresh_token, successor_refresh_token
from app.auth.revocation import deny_sessions, deny_token
from app.auth.state import AuthState
from app.auth.tokens import issue_access_token
from app.auth.users import authenticate
from app.core.errors import ErrorCode, Forbidden, NotFound, Unauthorized
from app.core.models import utcnow

log = logging.getLogger("structured_api.auth")

USER_AGENT_MAX = 256


@dataclass(frozen=True)
class IssuedTokens:
    """A fresh access + refresh token pair of one session."""

    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int
    session_id: uuid.UUID


def _tokens(
    *, auth: AuthState, user: User, family: AuthSession, refresh: str, refresh_expires_in: int
) -> IssuedTokens:
    """Sign an access token for `family` and pair it with `refresh`."""
    s = auth.settings
    access, _ = issue_access_token(
        keyring=auth.keyring,
        issuer=s.jwt_issuer,
        audience=s.jwt_audience,
        ttl=s.access_token_ttl,
        subject=str(user.id),
        roles=user.roles,
        session_id=str(family.id),
    )
    return IssuedTokens(
        access_token=access,
        refresh_token=refresh,
        expires_in=s.access_token_ttl,
        refresh_expires_in=refresh_expires_in,
        session_id=family.id,
    )


def _issue(
    *, session: Session, auth: AuthState, user: User, family: AuthSession, refresh: str
) -> IssuedTokens:
    """Add the refresh token `refresh` to `family`, commit, and sign an access token."""
    s = auth.settings
    now = utcnow()
    expires = now + timedelta(seconds=s.refresh_token_ttl)
    session.add(RefreshToken(session_id=family.id, token_hash=digest(refresh), expires_at=expires))
    family.last_used_at = now
    family.expires_at = expires
    session.add(family)
    session.commit()
    return _tokens(
        auth=auth, user=user, family=family, refresh=refresh, refresh_expires_in=s.refresh_token_ttl
    )


def start_session(
    *, session: Session, auth: AuthState, user: User, ip: str | None, user_agent: str | None
) -> IssuedTokens:
    """Open a new session for an authenticated user and issue its first tokens."""
    now = utcnow()
    family = AuthSession(
        user_id=user.id,
        ip=ip,
        user_agent=(user_agent or None) and user_agent[:USER_AGENT_MAX],
        last_used_at=now,
        expires_at=now,
    )
    session.add(family)
    return _issue(session=session, auth=auth, user=user, family=family, refresh=new_refresh_token())


def login(
    *,
    session: Session,
    auth: AuthState,
    email: str,
    password: str,
    ip: str,
    user_agent: str | None,
) -> IssuedTokens:
    """Password login: a new session with an access and a refresh token."""
    user = authenticate(session=session, auth=auth, email=email, password=password, ip=ip)
    return start_session(session=session, auth=auth, user=user, ip=ip, user_agent=user_agent)


def _revoke(*, session: Session, auth: AuthState, families: list[AuthSession], reason: str) -> None:
    """Revoke families in PostgreSQL, then deny their live access tokens in Redis."""
    now = utcnow()
    for family in families:
        family.revoked_at = family.revoked_at or now
        family.revoked_reason = family.revoked_reason or reason
        session.add(family)
    session.commit()
    s = auth.settings
    deny_sessions(
        auth.denylist,
        sessions=[(str(f.user_id), str(f.id)) for f in families],
        access_ttl=s.access_token_ttl,
        leeway=s.jwt_leeway_seconds,
    )


def refresh(
    *,
    session: Session,
    auth: AuthState,
    refresh_token: str,
    ip: str | None,
    user_agent: str | None,
) -> IssuedTokens:
    """Exchange a refresh token for a new pair; detect reuse and revoke the family."""
    row = session.exec(
        select(RefreshToken, AuthSession)
        .join(AuthSession, col(AuthSession.id) == col(RefreshToken.session_id))
        .where(RefreshToken.token_hash == digest(refresh_token))
        .with_for_update()  # serialises concurrent refreshes of one token
    ).first()
    if row is None:
        raise Unauthorized("Unknown refresh token.", code=ErrorCode.AUTH_INVALID_TOKEN)
    token, family = row
    now = utcnow()
    if family.revoked_at is not None:
        raise Unauthorized("The session was ended.", code=ErrorCode.AUTH_TOKEN_REVOKED)
    if token.expires_at <= now:
        raise Unauthorized("The refresh token has expired.", code=ErrorCode.AUTH_TOKEN_EXPIRED)
    replay = token.used_at is not None
    if token.used_at is not None:  # spent: a concurrent refresh inside the window, or reuse
        grace = timedelta(seconds=auth.settings.refresh_reuse_grace_seconds)
        if now - token.used_at > grace:
            _revoke(session=session, auth=auth, families=[family], reason="reuse")
            log.warning(
                "refresh token reuse: session revoked",
                extra={"session_id": str(family.id), "user_id": str(family.user_id)},
            )
            raise Unauthorized(code=ErrorCode.AUTH_TOKEN_REUSED)
    else:
        token.used_at = now
        session.add(token)
    user = session.get(User, family.user_id)
    if user is None or not user.is_active:
        _revoke(session=session, auth=auth, families=[family], reason="disabled")
        raise Forbidden(code=ErrorCode.AUTH_ACCOUNT_DISABLED)
    family.ip = ip
    family.user_agent = (user_agent or None) and user_agent[:USER_AGENT_MAX]
    successor = successor_refresh_token(refresh_token, auth.successor_key)
    if replay:
        return _replay(session=session, auth=auth, user=user, family=family, successor=successor)
    return _issue(session=session, auth=auth, user=user, family=family, refresh=successor)


def _replay(
    *, session: Session, auth: AuthState, user: User, family: AuthSession, successor: str
) -> IssuedTokens:
    """Answer a replay inside the grace window with the successor already issued.

    Nothing new is added to the family: the replaying client gets the refresh token the
    first presentation got (the session keeps one live chain) and a fresh access token
    of the same session.
    """
    issued = session.exec(
        select(RefreshToken).where(
            RefreshToken.token_hash == digest(successor), RefreshToken.session_id == family.id
        )
    ).first()
    if issued is None:
        # Only when SECRET_KEY changed within the grace window, or the first rotation
        # ran a release that drew successors at random: it cannot be recomputed. The
        # first presentation holds the live chain; refuse this one without revoking it.
        session.rollback()
        log.warning("refresh replay: successor not found", extra={"session_id": str(family.id)})
        raise Unauthorized(code=ErrorCode.AUTH_TOKEN_REUSED)
    now = utcnow()
    family.last_used_at = now
    session.add(family)
    session.commit()
    remaining = max(0, int((issued.expires_at - now).total_seconds()))
    return _tokens(
        auth=auth, user=user, family=family, refresh=successor, refresh_expires_in=remaining
    )


def logout(*, session: Session, auth: AuthState, caller: Caller) -> None:
    """End the caller's session and deny the access token it used."""
    if caller.session_id:
        family = session.get(AuthSession, uuid.UUID(caller.session_id))
        if family is not None and str(family.user_id) == caller.subject:
            _revoke(session=session, auth=auth, families=[family], reason="logout")
    if caller.token_id and caller.expires_at:
        deny_token(
            auth.denylist,
            user_id=caller.subject or "",
            jti=caller.token_id,
            expires_at=caller.expires_at,
            leeway=auth.leeway,
        )


def list_sessions(*, session: Session, user_id: uuid.UUID) -> list[AuthSession]:
    """The user's live sessions, most recently used first."""
    rows = session.exec(
        select(AuthSession)
        .where(
            AuthSession.user_id == user_id,
            col(AuthSession.revoked_at).is_(None),
            col(AuthSession.expires_at) > utcnow(),
        )
        .order_by(col(AuthSession.last_used_at).desc())
    ).all()
    return list(rows)


def end_session(
    *, session: Session, auth: AuthState, user_id: uuid.UUID, session_id: uuid.UUID
) -> None:
    """End one of the user's sessions; another user's session is `NotFound`."""
    family = session.get(AuthSession, session_id)
    if family is None or family.user_id != user_id or family.revoked_at is not None:
        raise NotFound(f"Session {session_id} does not exist.")
    _revoke(session=session, auth=auth, families=[family], reason="ended")


def revoke_user_sessions(
    *, session: Session, auth: AuthState, user_id: uuid.UUID, reason: str
) -> int:
    """End every live session of a user (account disabled); returns how many."""
    families = list(
        session.exec(
            select(AuthSession).where(
                AuthSession.user_id == user_id, col(AuthSession.revoked_at).is_(None)
            )
        ).all()
    )
    if families:
        _revoke(session=session, auth=auth, families=families, reason=reason)
    return len(families)


def purge_expired(*, session: Session, older_than: timedelta) -> int:
    """Delete sessions (and their tokens) expired or revoked longer ago than `older_than`."""
    cutoff = utcnow() - older_than
    result = session.execute(
        delete(AuthSession).where(
            (col(AuthSession.expires_at) < cutoff) | (col(AuthSession.revoked_at) < cutoff)
        )
    )
    session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]
