"""`/v1/auth/...`: register, login, refresh, logout, me, API keys, sessions (docs/auth.md)."""

from __future__ import annotations

import uuid

from flask import Blueprint, Response, g, request

from app.auth import api_keys as key_service
from app.auth import sessions as auth_service
from app.auth import users as user_service
from app.auth.caller import Role
from app.auth.decorators import require_auth, require_roles
from app.auth.identify import current_caller
from app.auth.models.api_key import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic, ApiKeysPublic
from app.auth.models.session import RefreshRequest, SessionPublic, SessionsPublic, TokenPair
from app.auth.models.user import LoginRequest, RegisterAccepted, RegisterRequest, UserPublic
from app.auth.sessions import IssuedTokens
from app.auth.state import auth_state
from app.core.db import get_session
from app.core.openapi import operation
from app.core.responses import created, ok

bp = Blueprint("auth", __name__, url_prefix="/auth")
TAGS = ["auth"]


def _ip() -> str:
    return request.remote_addr or "unknown"


def _pair(tokens: IssuedTokens) -> TokenPair:
    return TokenPair(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_in=tokens.expires_in,
        refresh_expires_in=tokens.refresh_expires_in,
        session_id=tokens.session_id,
    )


def _user_id() -> uuid.UUID:
    return uuid.UUID(str(current_caller().subject))


@bp.post("/register")
@operation(
    "Register an account",
    tags=TAGS,
    body=RegisterRequest,
    response=RegisterAccepted,
    status=202,
    errors=[429],
    description="Answers 202 whether or not the email is taken (no account enumeration); "
    "log in to use the account.",
)
def register(body: RegisterRequest) -> Response:
    """Create an account, or silently do nothing when the email exists."""
    user_service.register(
        session=get_session(),
        auth=auth_state(),
        email=body.email,
        password=body.password.get_secret_value(),
        ip=_ip(),
    )
    return ok(RegisterAccepted(), status=202, message="If the address can be used, log in.")


@bp.post("/login")
@operation(
    "Log in with email and password",
    tags=TAGS,
    body=LoginRequest,
    response=TokenPair,
    errors=[401, 403, 429],
)
def login(body: LoginRequest) -> Response:
    """Start a session: an access token and a refresh token."""
    tokens = auth_service.login(
        session=get_session(),
        auth=auth_state(),
        email=body.email,
        password=body.password.get_secret_value(),
        ip=_ip(),
        user_agent=request.user_agent.string or None,
    )
    return ok(_pair(tokens))


@bp.post("/refresh")
@operation(
    "Exchange a refresh token for a new pair",
    tags=TAGS,
    body=RefreshRequest,
    response=TokenPair,
    errors=[401, 403],
    description="Refresh tokens are single use; presenting a used one ends its session "
    "(`AUTH_TOKEN_REUSED`).",
)
def refresh(body: RefreshRequest) -> Response:
    """Rotate the refresh token and issue a new access token."""
    tokens = auth_service.refresh(
        session=get_session(),
        auth=auth_state(),
        refresh_token=body.refresh_token.get_secret_value(),
        ip=_ip(),
        user_agent=request.user_agent.string or None,
    )
    return ok(_pair(tokens))


@bp.post("/logout")
@require_auth(allow_readonly=True)
@operation("End the current session", tags=TAGS, auth=True)
def logout() -> Response:
    """Revoke this session's refresh tokens and deny the access token used."""
    auth_service.logout(session=get_session(), auth=auth_state(), caller=current_caller())
    return ok(None, message="Logged out.")


@bp.get("/me")
@require_auth(scopes=["profile:read"], load_user=True)
@operation("The caller's account", tags=TAGS, response=UserPublic, auth=True)
def me() -> Response:
    """The authenticated user."""
    return ok(UserPublic.of(g.current_user))


@bp.get("/api-keys")
@require_auth()
@operation("List your API keys", tags=TAGS, response=ApiKeysPublic, auth=True)
def list_api_keys() -> Response:
    """The caller's active keys (never the keys themselves)."""
    rows = key_service.list_api_keys(session=get_session(), user_id=_user_id())
    return ok(ApiKeysPublic(data=[ApiKeyPublic.of(k) for k in rows], count=len(rows)))


@bp.post("/api-keys")
@require_roles(Role.USER)
@operation(
    "Create an API key (shown once)",
    tags=TAGS,
    body=ApiKeyCreate,
    response=ApiKeyCreated,
    status=201,
    auth=True,
    roles=[Role.USER],
    errors=[409],
)
def create_api_key(body: ApiKeyCreate) -> Response:
    """Create a key; `data.key` is the only copy, store it now."""
    row, key = key_service.create_api_key(
        session=get_session(),
        auth=auth_state(),
        user_id=_user_id(),
        name=body.name,
        scopes=body.scopes,
        expires_in_days=body.expires_in_days,
    )
    data = ApiKeyCreated(**ApiKeyPublic.of(row).model_dump(), key=key)
    return created(data, location=f"/v1/auth/api-keys/{row.id}")


@bp.delete("/api-keys/<uuid:key_id>")
@require_auth(allow_readonly=True)
@operation("Revoke one of your API keys", tags=TAGS, auth=True, errors=[404])
def revoke_api_key(key_id: uuid.UUID) -> Response:
    """Revoke a key at once (its cache entry is dropped)."""
    key_service.revoke_api_key(
        session=get_session(), auth=auth_state(), key_id=key_id, user_id=_user_id()
    )
    return ok(None, message="API key revoked.")


@bp.get("/sessions")
@require_auth()
@operation("List your sessions", tags=TAGS, response=SessionsPublic, auth=True)
def list_sessions() -> Response:
    """Live sessions (logins) of the caller; `current` marks this one."""
    current = current_caller().session_id
    rows = auth_service.list_sessions(session=get_session(), user_id=_user_id())
    data = [
        SessionPublic(
            id=s.id,
            created_at=s.created_at,
            last_used_at=s.last_used_at,
            expires_at=s.expires_at,
            user_agent=s.user_agent,
            ip=s.ip,
            current=str(s.id) == current,
        )
        for s in rows
    ]
    return ok(SessionsPublic(data=data, count=len(data)))


@bp.delete("/sessions/<uuid:session_id>")
@require_auth(allow_readonly=True)
@operation("End one of your sessions", tags=TAGS, auth=True, errors=[404])
def end_session(session_id: uuid.UUID) -> Response:
    """Its refresh tokens stop working and its access tokens are denied."""
    auth_service.end_session(
        session=get_session(), auth=auth_state(), user_id=_user_id(), session_id=session_id
    )
    return ok(None, message="Session ended.")
