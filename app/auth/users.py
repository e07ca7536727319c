"""Users: registration, password login, listing. Keyword-only, raise domain errors.

Admin changes (roles, disabling) live in app/auth/user_admin.py: they cut sessions and
keys, which log-in (app/auth/sessions.py) builds on.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from sqlalchemy import ColumnElement, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.auth import throttle
from app.auth.caller import DEFAULT_ROLES
from app.auth.models.user import User
from app.auth.state import AuthState
from app.core import client_ip
from app.core.errors import AlreadyExists, ErrorCode, Forbidden, NotFound, Unauthorized
from app.core.models import utcnow

log = logging.getLogger("structured_api.auth")


def get_user_by_email(*, session: Session, email: str) -> User | None:
    """The user with this (normalised) email, if any."""
    return session.exec(select(User).where(User.email == email)).first()


def get_user(*, session: Session, user_id: uuid.UUID) -> User:
    """One user, or `NotFound`."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"User {user_id} does not exist.")
    return user


def create_user(
    *,
    session: Session,
    auth: AuthState,
    email: str,
    password: str,
    roles: Iterable[str] = DEFAULT_ROLES,
) -> User:
    """Insert a user with a hashed password; `AlreadyExists` if the email is taken."""
    user = User(email=email, password_hash=auth.passwords.hash(password), roles=sorted(set(roles)))
    session.add(user)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise AlreadyExists("A user with this email already exists.") from None
    session.refresh(user)
    return user


def register(*, session: Session, auth: AuthState, email: str, password: str, ip: str) -> None:
    """Create an account unless the email is taken; the caller cannot tell which.

    Both paths hash the password once, so they also take comparable time.
    """
    s = auth.settings
    window = s.register_throttle_window_seconds
    throttle.hit(
        auth.redis,
        [
            throttle.Counter(
                throttle.account_key("register", email), s.register_max_per_account, window
            ),
            throttle.Counter(
                throttle.ip_key("register", client_ip.bucket(ip, s.ratelimit_ipv6_prefix)),
                s.register_max_per_ip,
                window,
            ),
        ],
    )
    if get_user_by_email(session=session, email=email) is not None:
        auth.passwords.hash(password)
        return
    try:
        create_user(session=session, auth=auth, email=email, password=password)
    except AlreadyExists:
        return  # a concurrent registration won the race: same answer


def authenticate(*, session: Session, auth: AuthState, email: str, password: str, ip: str) -> User:
    """Check a password login, throttled per account and IP; rehash when params changed.

    The attempt is counted before the password is verified (`throttle.admit`), so
    parallel guesses cannot outrun the limits; a success refunds it.
    """
    s = auth.settings
    window = s.login_throttle_window_seconds
    bucket = client_ip.bucket(ip, s.ratelimit_ipv6_prefix)
    per_pair = throttle.Counter(
        throttle.pair_key("login", email, bucket), s.login_max_failures_per_account_ip, window
    )
    per_account = throttle.Counter(
        throttle.account_key("login", email),
        s.login_max_failures_per_account,
        s.login_account_window_seconds,
    )
    per_ip = throttle.Counter(
        throttle.ip_key("login", bucket),
        s.login_max_failures_per_ip,
        window,
    )
    throttle.admit(auth.redis, [per_pair, per_account, per_ip])

    user = get_user_by_email(session=session, email=email)
    if user is None:
        auth.passwords.burn(password)
        ok = False
    else:
        ok = auth.passwords.verify(user.password_hash, password)
    if not ok or user is None:
        raise Unauthorized("Email or password is wrong.", code=ErrorCode.AUTH_INVALID_CREDENTIALS)
    throttle.succeeded(auth.redis, refund=[per_account, per_ip], clear=[per_pair])
    if not user.is_active:
        raise Forbidden(code=ErrorCode.AUTH_ACCOUNT_DISABLED)
    if auth.passwords.needs_rehash(user.password_hash):
        user.password_hash = auth.passwords.hash(password)
    user.last_login_at = utcnow()
    session.add(user)
    return user


def list_users(
    *,
    session: Session,
    limit: int,
    offset: int,
    email: str | None = None,
    role: str | None = None,
    disabled: bool | None = None,
) -> tuple[list[User], int]:
    """A filtered page of users, oldest first, and the filtered total."""
    conditions: list[ColumnElement[bool]] = []
    if email:
        escaped = email.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(col(User.email).like(f"%{escaped}%", escape="\\"))
    if role:
        conditions.append(col(User.roles).contains([role]))
    if disabled is not None:
        conditions.append(
            col(User.disabled_at).is_not(None) if disabled else col(User.disabled_at).is_(None)
        )
    total = session.exec(select(func.count()).select_from(User).where(*conditions)).one()
    rows = session.exec(
        select(User)
        .where(*conditions)
        .order_by(col(User.created_at), col(User.id))
        .offset(offset)
        .limit(limit)
    ).all()
    return list(rows), int(total)
