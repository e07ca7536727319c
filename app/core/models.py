"""`CoreModel`: the id and timestamps every table shares."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import AfterValidator
from sqlalchemy import event
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Timezone-aware now, in UTC."""
    return datetime.now(UTC)


def _in_utc(value: datetime) -> datetime:
    # PostgreSQL refuses zone offsets beyond +-15:59 ("time zone displacement out of
    # range"), which Python accepts up to +-23:59: found by tests/fuzz as a 500.
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range once converted to UTC") from None


#: A timestamp from a client (query filters): aware values are normalised to UTC.
ClientDatetime = Annotated[datetime, AfterValidator(_in_utc)]


class CoreModel(SQLModel):
    """Base for table models: UUID primary key, `created_at`, `updated_at`.

    A new row gets one instant for both timestamps, so `updated_at > created_at` means
    "changed since created". `updated_at` moves on every UPDATE issued through
    SQLAlchemy (ORM flush or Core `update()`); raw SQL updates leave it alone. All
    three values come from the process clock, so one row never mixes two clocks; the
    server defaults only serve rows inserted by raw SQL.
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
            "onupdate": utcnow,
            "nullable": False,
        },
    )


@event.listens_for(CoreModel, "before_insert", propagate=True)
def _one_instant_on_insert(_mapper: Any, _connection: Any, target: CoreModel) -> None:
    # Two default factories run microseconds apart; without this a fresh row would
    # already look "updated".
    target.updated_at = target.created_at
