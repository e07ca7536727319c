"""Users: the table and the shapes the API accepts and returns."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import sqlalchemy as sa
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    SecretStr,
    model_validator,
)
from sqlalchemy.dialects import postgresql
from sqlmodel import Field as SQLField

from app.auth.caller import DEFAULT_ROLES, Role
from app.auth.passwords import MAX_LENGTH, password_problems
from app.core.models import CoreModel

TZ = sa.DateTime(timezone=True)


def normalise_email(value: str) -> str:
    """The canonical form we store and compare: trimmed, lower-case."""
    return value.strip().lower()


NormalisedEmail = Annotated[EmailStr, AfterValidator(normalise_email)]


class User(CoreModel, table=True):
    """An account. `roles` is a PostgreSQL array of `Role` values."""

    __tablename__ = "users"
    __table_args__ = (
        # Defence in depth: a role outside the catalogue can never be stored.
        sa.CheckConstraint(
            "roles <@ ARRAY['admin', 'user', 'readonly']::varchar[] AND cardinality(roles) >= 1",
            name="ck_users_roles_known",
        ),
    )

    email: str = SQLField(max_length=320, unique=True)
    password_hash: str = SQLField(max_length=255)
    roles: list[str] = SQLField(
        default_factory=lambda: list(DEFAULT_ROLES),
        sa_column=sa.Column(postgresql.ARRAY(sa.String(16)), nullable=False),
    )
    disabled_at: datetime | None = SQLField(default=None, sa_type=TZ)  # type: ignore[call-overload]
    last_login_at: datetime | None = SQLField(default=None, sa_type=TZ)  # type: ignore[call-overload]

    @property
    def is_active(self) -> bool:
        """False once an admin disabled the account."""
        return self.disabled_at is None


class RegisterRequest(BaseModel):
    """Body of `POST /v1/auth/register`."""

    model_config = ConfigDict(extra="forbid")

    email: NormalisedEmail
    password: SecretStr

    @model_validator(mode="after")
    def _password_policy(self) -> RegisterRequest:
        problems = password_problems(self.password.get_secret_value(), email=self.email)
        if problems:
            raise ValueError("password " + "; ".join(problems))
        return self


class LoginRequest(BaseModel):
    """Body of `POST /v1/auth/login`."""

    model_config = ConfigDict(extra="forbid")

    email: Annotated[str, AfterValidator(normalise_email)] = Field(max_length=320)
    # Bounded so nobody makes us hash megabytes; longer than any accepted password.
    password: SecretStr = Field(max_length=4 * MAX_LENGTH)


class RegisterAccepted(BaseModel):
    """Register's answer: identical whether or not the address was already taken."""

    status: str = "accepted"


class UserPublic(BaseModel):
    """What the API returns for a user."""

    id: uuid.UUID
    email: str
    roles: list[str]
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def of(cls, user: User) -> UserPublic:
        """Project a table row."""
        return cls(
            id=user.id,
            email=user.email,
            roles=sorted(user.roles),
            disabled=user.disabled_at is not None,
            created_at=user.created_at,
            last_login_at=user.last_login_at,
        )


class UsersPublic(BaseModel):
    """A page of users."""

    data: list[UserPublic]
    count: int


class UserListQuery(BaseModel):
    """Query of `GET /v1/admin/users`."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=200)
    # Bounded: PostgreSQL's OFFSET is a bigint; a larger value was a 500 (tests/fuzz).
    offset: int = Field(default=0, ge=0, le=1_000_000)
    email: str | None = Field(default=None, max_length=320, description="Substring match")
    role: Role | None = None
    disabled: bool | None = None


class AdminUserUpdate(BaseModel):
    """Body of `PATCH /v1/admin/users/{id}`: change roles and/or disable."""

    model_config = ConfigDict(extra="forbid")

    roles: list[Role] | None = Field(default=None, min_length=1, max_length=3)
    disabled: bool | None = None
