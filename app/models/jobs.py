"""Background AI jobs, Idempotency-Key bindings and the dead-letter store.

A job row is the durable truth about a job; the Celery message only says "look at job
X". Delivery bookkeeping (attempt, deliveries, redeliveries, the current delivery's
token) lives on the row so a redelivered message can tell a lost worker from a retry,
and only the delivery holding the current token may record the result (side effect
once; app/core/tasks/ai.py).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from app.models.base import CoreModel

QUEUED: Final = "queued"
RUNNING: Final = "running"
RETRYING: Final = "retrying"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"
DEAD: Final = "dead"
ACTIVE: Final = (QUEUED, RUNNING, RETRYING)
FINISHED: Final = (SUCCEEDED, FAILED, CANCELLED, DEAD)
JobStatus = Literal["queued", "running", "retrying", "succeeded", "failed", "cancelled", "dead"]

_TS: Any = sa.DateTime(timezone=True)


class AIJob(CoreModel, table=True):
    """One background generation."""

    __tablename__ = "ai_job"
    __table_args__ = (
        sa.Index("ix_ai_job_owner_created", "owner", "created_at"),
        sa.Index("ix_ai_job_status_updated", "status", "updated_at"),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'retrying', 'succeeded', 'failed', 'cancelled', "
            "'dead')",
            name="ck_ai_job_status",
        ),
    )

    owner: str = Field(max_length=100)
    caller: dict[str, Any] = Field(
        default_factory=dict, sa_type=JSONB, sa_column_kwargs={"nullable": False}
    )
    status: str = Field(default=QUEUED, max_length=16)
    request: dict[str, Any] = Field(sa_type=JSONB, sa_column_kwargs={"nullable": False})
    result: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    error: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    reservation: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    attempt: int = Field(default=0)
    deliveries: int = Field(default=0)
    redeliveries: int = Field(default=0)
    delivery_token: str | None = Field(default=None, max_length=64)
    lease_expires_at: datetime | None = Field(default=None, sa_type=_TS)
    cancel_requested: bool = Field(default=False)
    generation_id: uuid.UUID | None = Field(default=None)
    celery_task_id: str | None = Field(default=None, max_length=64)
    # The path the job was submitted on (`/v1/ai/jobs`, `/v2/ai/jobs`): token budgets
    # are matched against it when the worker reserves again after a retry.
    path: str = Field(default="/v1/ai/jobs", max_length=200)
    traceparent: str | None = Field(default=None, max_length=128)
    trace_id: str | None = Field(default=None, max_length=32)
    enqueued_at: datetime | None = Field(default=None, sa_type=_TS)
    started_at: datetime | None = Field(default=None, sa_type=_TS)
    finished_at: datetime | None = Field(default=None, sa_type=_TS)


class IdempotencyKey(CoreModel, table=True):
    """An `Idempotency-Key` bound to one request body and the resource it created.

    draft-ietf-httpapi-idempotency-key-header: same key and same body -> the same
    resource; same key, other body -> 422.
    """

    __tablename__ = "idempotency_key"
    __table_args__ = (sa.UniqueConstraint("owner", "key", name="uq_idempotency_key_owner_key"),)

    owner: str = Field(max_length=100)
    key: str = Field(max_length=255)
    request_hash: str = Field(max_length=64)
    resource: str = Field(max_length=32)
    resource_id: uuid.UUID
    expires_at: datetime = Field(sa_type=_TS, index=True)


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


class JobPublic(BaseModel):
    """A job as its owner sees it."""

    id: uuid.UUID
    status: JobStatus
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempt: int
    request: dict[str, Any]
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    cancel_requested: bool


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
