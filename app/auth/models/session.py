"""Sessions (refresh-token families) and refresh tokens, and the token API shapes.

A session is one login: every refresh token it ever issued belongs to it, and
revoking it (logout, reuse detected, admin action) ends them all (RFC 9700 4.14).
Refresh tokens are stored as SHA-256 digests only (see app/auth/opaque.py).
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlmodel import Field as SQLField

from app.core.models import CoreModel

TZ = sa.DateTime(timezone=True)


class AuthSession(CoreModel, table=True):
    """One refresh-token family: created at login, rotated on every refresh."""

    __tablename__ = "auth_sessions"

    user_id: uuid.UUID = SQLField(foreign_key="users.id", ondelete="CASCADE", index=True)
    user_agent: str | None = SQLField(default=None, max_length=256)
    ip: str | None = SQLField(default=None, max_length=64)
    last_used_at: datetime = SQLField(sa_type=TZ)  # type: ignore[call-overload]
    expires_at: datetime = SQLField(sa_type=TZ)  # type: ignore[call-overload]
    revoked_at: datetime | None = SQLField(default=None, sa_type=TZ)  # type: ignore[call-overload]
    revoked_reason: str | None = SQLField(default=None, max_length=32)


class RefreshToken(CoreModel, table=True):
    """One refresh token of a family; `used_at` is set when it is exchanged."""

    __tablename__ = "auth_refresh_tokens"

    session_id: uuid.UUID = SQLField(foreign_key="auth_sessions.id", ondelete="CASCADE", index=True)
    token_hash: str = SQLField(max_length=64, unique=True)
    expires_at: datetime = SQLField(sa_type=TZ)  # type: ignore[call-overload]
    used_at: datetime | None = SQLField(default=None, sa_type=TZ)  # type: ignore[call-overload]


class RefreshRequest(BaseModel):
    """Body of `POST /v1/auth/refresh`."""

    model_config = ConfigDict(extra="forbid")

    refresh_token: SecretStr = Field(min_length=1, max_length=256)


class TokenPair(BaseModel):
    """What login and refresh return (docs/architecture.md)."""

    access_token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_in: int = Field(description="Seconds until the access token expires")
    refresh_expires_in: int = Field(description="Seconds until the refresh token expires")
    session_id: uuid.UUID


class SessionPublic(BaseModel):
    """One of the caller's sessions."""

    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    user_agent: str | None
    ip: str | None
    current: bool = Field(description="True for the session of the token making this call")


class SessionsPublic(BaseModel):
    """The caller's active sessions, most recently used first."""

    data: list[SessionPublic]
    count: int
