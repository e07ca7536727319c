"""The dead-letter store: tasks that failed their last retry, kept in PostgreSQL.

Celery's Redis transport has no dead-letter queue, so the last failure of a task writes
a row here; an admin lists and replays it (`/v1/admin/dead-letters`, `flask dead-letters`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from app.core.models import CoreModel

_TS: Any = sa.DateTime(timezone=True)


class DeadLetter(CoreModel, table=True):
    """A task that failed its last retry (the Redis transport has no dead-letter queue)."""

    __tablename__ = "dead_letter"
    __table_args__ = (
        sa.Index("ix_dead_letter_status_created", "status", "created_at"),
        sa.CheckConstraint(
            "status IN ('pending', 'replayed', 'discarded')", name="ck_dead_letter_status"
        ),
    )

    task_name: str = Field(max_length=200, index=True)
    task_id: str = Field(max_length=64)
    subject: str | None = Field(default=None, max_length=100, description="e.g. ai_job:<id>")
    task_args: list[Any] = Field(
        default_factory=list, sa_type=JSONB, sa_column_kwargs={"nullable": False}
    )
    task_kwargs: dict[str, Any] = Field(
        default_factory=dict, sa_type=JSONB, sa_column_kwargs={"nullable": False}
    )
    error_type: str = Field(max_length=200)
    error_message: str = Field(sa_type=sa.Text)
    attempts: int = Field(default=0)
    status: str = Field(default="pending", max_length=16)
    replay_count: int = Field(default=0)
    replayed_at: datetime | None = Field(default=None, sa_type=_TS)
    replay_task_id: str | None = Field(default=None, max_length=64)


# --- API shapes ----------------------------------------------------------------------


class DeadLetterPublic(BaseModel):
    """One dead letter (payload included: it is what replay sends again)."""

    id: uuid.UUID
    created_at: datetime
    task_name: str
    task_id: str
    subject: str | None
    task_args: list[Any]
    task_kwargs: dict[str, Any]
    error_type: str
    error_message: str
    attempts: int
    status: Literal["pending", "replayed", "discarded"]
    replay_count: int
    replayed_at: datetime | None
    replay_task_id: str | None


class DeadLetterPage(BaseModel):
    """A page of dead letters, newest first."""

    data: list[DeadLetterPublic]
    count: int


class DeadLetterQuery(BaseModel):
    """Filters of `GET /v1/admin/dead-letters`."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["pending", "replayed", "discarded"] | None = None
    task_name: str | None = PydanticField(default=None, max_length=200)
    limit: int = PydanticField(default=50, ge=1, le=200)
    # Bounded: PostgreSQL's OFFSET is a bigint; a larger value was a 500 (tests/fuzz).
    offset: int = PydanticField(default=0, ge=0, le=1_000_000)


class ReplayResult(BaseModel):
    """What replaying a dead letter did."""

    id: uuid.UUID
    task_id: str
    status: Literal["replayed"]
