"""Admin changes to an account: roles and disabling; the user's live credentials go at once."""

from __future__ import annotations

import logging
import uuid

from sqlmodel import Session, select

from app.auth.api_keys import forget_user_keys
from app.auth.caller import Role
from app.auth.models.user import User
from app.auth.revocation import revoke_user_tokens
from app.auth.sessions import revoke_user_sessions
from app.auth.state import AuthState
from app.core.errors import Conflict, NotFound
from app.core.models import utcnow

log = logging.getLogger("structured_api.auth")


def update_user(
    *,
    session: Session,
    auth: AuthState,
    actor_id: str,
    user_id: uuid.UUID,
    roles: list[str] | None,
    disabled: bool | None,
) -> User:
    """Change roles and/or disable; the user's live credentials are cut immediately."""
    user = session.exec(select(User).where(User.id == user_id).with_for_update()).first()
    if user is None:
        raise NotFound(f"User {user_id} does not exist.")
    new_roles = sorted(set(roles)) if roles is not None else sorted(user.roles)
    if str(user.id) == actor_id and (disabled or Role.ADMIN not in new_roles):
        raise Conflict("Admins cannot disable or demote themselves; ask another admin.")
    roles_changed = new_roles != sorted(user.roles)
    was_active = user.is_active
    user.roles = new_roles
    if disabled is not None:
        user.disabled_at = (user.disabled_at or utcnow()) if disabled else None
    session.add(user)
    session.commit()
    session.refresh(user)

    s = auth.settings
    now_disabled = not user.is_active
    if now_disabled and was_active:
        revoke_user_sessions(session=session, auth=auth, user_id=user.id, reason="disabled")
    if roles_changed or now_disabled != (not was_active):
        revoke_user_tokens(
            auth.denylist,
            user_id=str(user.id),
            disabled=now_disabled,
            access_ttl=s.access_token_ttl,
            leeway=s.jwt_leeway_seconds,
        )
        forget_user_keys(session=session, auth=auth, user_id=user.id)
    log.info(
        "user updated",
        extra={
            "actor_id": actor_id,
            "user_id": str(user.id),
            "roles": new_roles,
            "disabled": now_disabled,
        },
    )
    return user
