"""Control tables of the runtime config store (docs/architecture.md).

One generic table keyed by `(kind, name)` instead of one table per kind: every kind
has the same envelope (a validated `spec`, an observed `status`, an owner), the
snapshot loader reads all kinds in one query, the audit trail and the ownership rules
are kind-agnostic, and a new kind in `app.core.specs.KINDS` needs no migration. Specs
are validated by their Pydantic model on every write (and again when a snapshot is
built), so PostgreSQL never needs to know their fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Generic, Literal, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, StringConstraints
from pydantic import Field as PydanticField
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.core.models import ClientDatetime, CoreModel, utcnow

SOURCE_ADMIN: Final = "admin"
SOURCE_OPERATOR: Final = "operator"
SOURCES: Final = (SOURCE_ADMIN, SOURCE_OPERATOR)

ACTION_CREATE: Final = "create"
ACTION_UPDATE: Final = "update"
ACTION_DELETE: Final = "delete"
ACTIONS: Final = (ACTION_CREATE, ACTION_UPDATE, ACTION_DELETE)

# The single row of `config_generation`.
GENERATION_ROW_ID: Final = 1


class ConfigObject(CoreModel, table=True):
    """One runtime-config object (an `ApiVersion`, `RateLimitPolicy`, `AIProvider` or
    `AIModelRoute`)."""

    __tablename__ = "config_object"
    __table_args__ = (
        sa.UniqueConstraint("kind", "name", name="uq_config_object_kind_name"),
        sa.CheckConstraint("source IN ('admin', 'operator')", name="ck_config_object_source"),
    )

    kind: str = Field(max_length=64, description="Key of app.core.specs.KINDS")
    name: str = Field(max_length=63, description="RFC 1123 label, unique per kind")
    spec: dict[str, Any] = Field(
        default_factory=dict,
        sa_type=JSONB,
        sa_column_kwargs={"nullable": False},
    )
    status: dict[str, Any] = Field(
        default_factory=dict,
        sa_type=JSONB,
        sa_column_kwargs={"nullable": False},
    )
    source: str = Field(max_length=16, description="admin | operator")
    # The custom resource that owns an operator row (namespace + uid of the CR).
    source_namespace: str | None = Field(default=None, max_length=63)
    source_uid: str | None = Field(default=None, max_length=64)
    # Store generation of the last change to this row (monotonic per row too).
    generation: int = Field(sa_type=sa.BigInteger, nullable=False)
    # AI provider keys, encrypted by whoever writes them (never clear text here);
    # the version is a hash the API may show instead of the key.
    credential_ciphertext: str | None = Field(default=None, sa_type=sa.Text)
    credential_version: str | None = Field(default=None, max_length=128)


class ConfigGeneration(SQLModel, table=True):
    """The store's generation counter: one row, bumped by every config change."""

    __tablename__ = "config_generation"
    __table_args__ = (sa.CheckConstraint("id = 1", name="ck_config_generation_single_row"),)

    id: int = Field(default=GENERATION_ROW_ID, primary_key=True)
    generation: int = Field(default=0, sa_type=sa.BigInteger, nullable=False)
    updated_at: datetime = Field(
        default_factory=utcnow,
        sa_type=sa.DateTime(timezone=True),  # type: ignore[call-overload]
        sa_column_kwargs={"server_default": sa.func.now(), "nullable": False},
    )


class ConfigAudit(SQLModel, table=True):
    """One config change: who, through which front door, what, before and after."""

    __tablename__ = "config_audit"
    __table_args__ = (
        sa.Index("ix_config_audit_kind_name", "kind", "name"),
        sa.CheckConstraint(
            "action IN ('create', 'update', 'delete')", name="ck_config_audit_action"
        ),
    )

    # A bigint sequence orders the trail (timestamps can tie) and makes a stable cursor.
    id: int | None = Field(default=None, primary_key=True, sa_type=sa.BigInteger)
    at: datetime = Field(
        default_factory=utcnow,
        sa_type=sa.DateTime(timezone=True),  # type: ignore[call-overload]
        sa_column_kwargs={"server_default": sa.func.now(), "nullable": False},
    )
    actor: str = Field(max_length=200, index=True)
    source: str = Field(max_length=16)
    source_namespace: str | None = Field(default=None, max_length=63)
    source_uid: str | None = Field(default=None, max_length=64)
    kind: str = Field(max_length=64)
    name: str = Field(max_length=63)
    action: str = Field(max_length=16)
    before: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    after: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    generation: int = Field(sa_type=sa.BigInteger, nullable=False, index=True)


# --- API shapes (docs/architecture.md: `{"name", "spec"}` in, `{"name", "spec",
# "status", "source"}` out, field names as in the custom resources) -------------------

S = TypeVar("S", bound=BaseModel)
ObjectName = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
]


class ConfigBody(BaseModel, Generic[S]):
    """Body of `PUT /v1/admin/<kind>/{name}`; `name`, if sent, must equal the path's."""

    model_config = ConfigDict(extra="forbid")

    name: ObjectName | None = None
    spec: S


class SourcePublic(BaseModel):
    """Which front door owns an object; operator rows name their custom resource."""

    type: Literal["admin", "operator"]
    namespace: str | None = None
    uid: str | None = None


class CredentialPublic(BaseModel):
    """Whether a provider key is stored, and its version hash; never the key."""

    present: bool
    version: str | None = None


class ConfigPublic(BaseModel, Generic[S]):
    """One config object as the admin API returns it."""

    name: str
    spec: S
    status: dict[str, Any]
    source: SourcePublic
    generation: int
    credential: CredentialPublic | None = None
    created_at: datetime
    updated_at: datetime


class ConfigsPublic(BaseModel, Generic[S]):
    """Every object of one kind."""

    data: list[ConfigPublic[S]]
    count: int


class ConfigListQuery(BaseModel):
    """Query of the list endpoints."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["admin", "operator"] | None = None


class ConfigDeleted(BaseModel):
    """What a DELETE returns."""

    name: str
    deleted: bool
    generation: int


class AuditPublic(BaseModel):
    """One audit record."""

    id: int
    at: datetime
    actor: str
    source: SourcePublic
    kind: str
    name: str
    action: Literal["create", "update", "delete"]
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    generation: int


class AuditPage(BaseModel):
    """A page of the audit trail, newest first; pass `next_cursor` as `cursor`."""

    data: list[AuditPublic]
    next_cursor: str | None


class AuditQuery(BaseModel):
    """Filters of `GET /v1/admin/audit` (all optional, combined with AND)."""

    model_config = ConfigDict(extra="forbid")

    limit: int = PydanticField(default=50, ge=1, le=200)
    cursor: Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,18}$")] | None = None
    kind: Literal["ApiVersion", "RateLimitPolicy", "AIProvider", "AIModelRoute"] | None = None
    name: ObjectName | None = None
    source: Literal["admin", "operator"] | None = None
    actor: Annotated[str, StringConstraints(max_length=200)] | None = None
    action: Literal["create", "update", "delete"] | None = None
    since: ClientDatetime | None = None
    until: ClientDatetime | None = None
