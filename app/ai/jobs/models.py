"""Background AI jobs and Idempotency-Key bindings (dead letters: app/ai/dead_letters).

A job row is the durable truth about a job; the Celery message only says "look at job
X". Delivery bookkeeping (attempt, deliveries, redeliveries, the current delivery's
token) lives on the row so a redelivered message can tell a lost worker from a retry,
and only the delivery holding the current token may record the result (side effect
once; app/ai/jobs/tasks.py).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final, Literal

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from app.core.models import CoreModel

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
