"""`/v1/admin/users`: list users, disable them, change their roles (role `admin`)."""

from __future__ import annotations

import uuid

from flask import Blueprint, Response

from app.auth import user_admin
from app.auth import users as user_service
from app.auth.caller import Role
from app.auth.decorators import require_roles
from app.auth.identify import current_caller
from app.auth.models.user import AdminUserUpdate, UserListQuery, UserPublic, UsersPublic
from app.auth.state import auth_state
from app.core.db import get_session
from app.core.openapi import operation
from app.core.responses import ok

bp = Blueprint("admin_users", __name__, url_prefix="/admin/users")
TAGS = ["admin"]
ADMIN = [Role.ADMIN.value]
SCOPES = ["admin:users"]


@bp.get("")
@require_roles(*ADMIN, scopes=SCOPES)
@operation(
    "List users", tags=TAGS, query=UserListQuery, response=UsersPublic, auth=True, roles=ADMIN
)
def list_users(query: UserListQuery) -> Response:
    """A filtered page of users."""
    rows, total = user_service.list_users(
        session=get_session(),
        limit=query.limit,
        offset=query.offset,
        email=query.email,
        role=query.role.value if query.role else None,
        disabled=query.disabled,
    )
    return ok(UsersPublic(data=[UserPublic.of(u) for u in rows], count=total))


@bp.get("/<uuid:user_id>")
@require_roles(*ADMIN, scopes=SCOPES)
@operation("Read a user", tags=TAGS, response=UserPublic, auth=True, roles=ADMIN, errors=[404])
def get_user(user_id: uuid.UUID) -> Response:
    """One user."""
    return ok(UserPublic.of(user_service.get_user(session=get_session(), user_id=user_id)))


@bp.patch("/<uuid:user_id>")
@require_roles(*ADMIN, scopes=SCOPES)
@operation(
    "Disable a user or change roles",
    tags=TAGS,
    body=AdminUserUpdate,
    response=UserPublic,
    auth=True,
    roles=ADMIN,
    errors=[404, 409],
    description="Disabling ends every session and refuses the user's tokens and API keys "
    "at once; a role change refuses the user's current access tokens (refresh to continue).",
)
def update_user(user_id: uuid.UUID, body: AdminUserUpdate) -> Response:
    """Apply the fields that were sent."""
    user = user_admin.update_user(
        session=get_session(),
        auth=auth_state(),
        actor_id=str(current_caller().subject),
        user_id=user_id,
        roles=[r.value for r in body.roles] if body.roles is not None else None,
        disabled=body.disabled,
    )
    return ok(UserPublic.of(user))
