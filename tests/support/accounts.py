"""Signed-in test callers: a committed user and an Authorization header for it.

For routes that need any signed-in user (the notes example, say) when the test is not
about authentication. Call inside the app's context; the user is committed through
`session` (the per-test transaction in-process, for real against a test's own server).
"""

from __future__ import annotations

import secrets
import uuid

from sqlmodel import Session

from app.auth.models.user import User
from app.auth.state import auth_state
from app.auth.tokens import issue_access_token

TOKEN_TTL = 3600


def new_user(session: Session, *, roles: tuple[str, ...] = ("user",)) -> uuid.UUID:
    """Commit a user with `roles` (no usable password) and return its id."""
    user = User(email=f"t-{secrets.token_hex(8)}@example.com", password_hash="x", roles=list(roles))
    session.add(user)
    session.commit()
    return user.id


def bearer(user_id: uuid.UUID, *, roles: tuple[str, ...] = ("user",)) -> dict[str, str]:
    """An Authorization header with an access token for `user_id`, signed by this app."""
    state = auth_state()
    token, _ = issue_access_token(
        keyring=state.keyring,
        issuer=state.settings.jwt_issuer,
        audience=state.settings.jwt_audience,
        ttl=TOKEN_TTL,
        subject=str(user_id),
        roles=list(roles),
        session_id=None,
    )
    return {"Authorization": f"Bearer {token}"}


def signed_in(session: Session, *, roles: tuple[str, ...] = ("user",)) -> dict[str, str]:
    """The Authorization header of a new user with `roles`."""
    return bearer(new_user(session, roles=roles), roles=roles)
