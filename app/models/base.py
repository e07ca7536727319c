"""`CoreModel`: the id and timestamps every table shares."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Timezone-aware now, in UTC."""
    return datetime.now(UTC)


class CoreModel(SQLModel):
    """Base for table models: UUID primary key, `created_at`, `updated_at`.

    `updated_at` is set by the database on every UPDATE issued through SQLAlchemy
    (`onupdate` uses `clock_timestamp()`, not `now()`, which is frozen per transaction).
    """

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    created_at: datetime = Field(
        default_factory=utcnow,
        sa_type=sa.DateTime(timezone=True),  # type: ignore[call-overload]
        sa_column_kwargs={"server_default": sa.func.now(), "nullable": False},
    )
    updated_at: datetime = Field(
        default_factory=utcnow,
        sa_type=sa.DateTime(timezone=True),  # type: ignore[call-overload]
        sa_column_kwargs={
            "server_default": sa.func.now(),
            "onupdate": sa.func.clock_timestamp(),
            "nullable": False,
        },
    )
