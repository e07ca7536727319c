"""API keys for services: stored as SHA-256 digests, shown in clear once at creation."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.dialects import postgresql
from sqlmodel import Field as SQLField

from app.auth.caller import SCOPES
from app.core.models import CoreModel

TZ = sa.DateTime(timezone=True)
MAX_EXPIRY_DAYS = 730


class ApiKey(CoreModel, table=True):
    """One API key; `prefix` is the non-secret start shown to tell keys apart."""

    __tablename__ = "api_keys"

    user_id: uuid.UUID = SQLField(foreign_key="users.id", ondelete="CASCADE", index=True)
    name: str = SQLField(max_length=100)
    prefix: str = SQLField(max_length=16)
    key_hash: str = SQLField(max_length=64, unique=True)
    scopes: list[str] = SQLField(
        default_factory=list,
        sa_column=sa.Column(postgresql.ARRAY(sa.String(64)), nullable=False),
    )
    expires_at: datetime | None = SQLField(default=None, sa_type=TZ)  # type: ignore[call-overload]
    last_used_at: datetime | None = SQLField(default=None, sa_type=TZ)  # type: ignore[call-overload]
    revoked_at: datetime | None = SQLField(default=None, sa_type=TZ)  # type: ignore[call-overload]


class ApiKeyCreate(BaseModel):
    """Body of `POST /v1/auth/api-keys`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(min_length=1, max_length=len(SCOPES))
    expires_in_days: int | None = Field(
        default=None, ge=1, le=MAX_EXPIRY_DAYS, description="Omit for a key that never expires"
    )

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(SCOPES))
        if unknown:
            raise ValueError(f"unknown scopes {unknown}; known: {sorted(SCOPES)}")
        return sorted(set(value))


class ApiKeyPublic(BaseModel):
    """An API key as listed: never the key itself."""

    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyPublic:
        """Project a table row."""
        return cls(
            id=key.id,
            name=key.name,
            prefix=key.prefix,
            scopes=sorted(key.scopes),
            created_at=key.created_at,
            expires_at=key.expires_at,
            last_used_at=key.last_used_at,
        )


class ApiKeyCreated(ApiKeyPublic):
    """Creation's answer: the only time `key` is ever shown."""

    key: str


class ApiKeysPublic(BaseModel):
    """The caller's active API keys."""

    data: list[ApiKeyPublic]
    count: int
