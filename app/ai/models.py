"""AI generation history: one row per generate call (sync, streamed or from a job).

Prompts and answers are kept only as `AI_HISTORY_CONTENT` says (none / redacted /
full, app/ai/history/records.py); lengths and a SHA-256 of the prompt are always kept
so a record can be matched without keeping the text. Rows older than
`AI_HISTORY_RETENTION_DAYS` are deleted by beat (`sapi.ai.purge_expired`).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal, Self

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator
from pydantic import Field as PydanticField
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from app.core.models import ClientDatetime, CoreModel

OUTCOME_SUCCESS: Final = "success"
OUTCOME_ERROR: Final = "error"
#: The client went away during a stream; charged for what was delivered.
OUTCOME_CANCELLED: Final = "cancelled"
OUTCOMES: Final = (OUTCOME_SUCCESS, OUTCOME_ERROR, OUTCOME_CANCELLED)


class AIGeneration(CoreModel, table=True):
    """One generate call and what it cost."""

    __tablename__ = "ai_generation"
    __table_args__ = (
        sa.Index("ix_ai_generation_owner_created", "owner", "created_at"),
        sa.Index("ix_ai_generation_created", "created_at"),
        sa.CheckConstraint(
            "outcome IN ('success', 'error', 'cancelled')", name="ck_ai_generation_outcome"
        ),
    )

    owner: str = Field(max_length=100, description="user:<id> or api_key:<id>")
    user_id: str | None = Field(default=None, max_length=64)
    api_key_id: str | None = Field(default=None, max_length=64)
    job_id: uuid.UUID | None = Field(default=None, index=True)
    provider: str | None = Field(default=None, max_length=63)
    model: str = Field(max_length=128, description="The model name the caller sent")
    #: The provider's own model (or Azure deployment) that answered; None if none did.
    upstream_model: str | None = Field(default=None, max_length=128)
    #: generate | openai | anthropic: the surface the call came in on.
    surface: str = Field(default="generate", max_length=16)
    stream: bool = Field(default=False)
    outcome: str = Field(max_length=16)
    error_code: str | None = Field(default=None, max_length=64)
    input_tokens: int = Field(default=0)
    output_tokens: int = Field(default=0)
    tokens_estimated: bool = Field(default=False)
    cost_usd: Decimal = Field(default=Decimal(0), max_digits=20, decimal_places=10)
    latency_ms: int = Field(default=0)
    ttft_ms: int | None = Field(default=None)
    attempts: list[dict[str, Any]] = Field(
        default_factory=list, sa_type=JSONB, sa_column_kwargs={"nullable": False}
    )
    prompt: str | None = Field(default=None, sa_type=sa.Text)
    response: str | None = Field(default=None, sa_type=sa.Text)
    prompt_chars: int = Field(default=0)
    response_chars: int = Field(default=0)
    prompt_sha256: str = Field(max_length=64)
    request_id: str | None = Field(default=None, max_length=128)
    trace_id: str | None = Field(default=None, max_length=32)


# --- API shapes ----------------------------------------------------------------------

ModelName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^\S+$")]


class MessageIn(BaseModel):
    """One chat message of a request."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = PydanticField(max_length=200_000)


class GenerateBody(BaseModel):
    """Body of `POST /v1/ai/generate` and `POST /v1/ai/jobs`: a prompt or messages."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = PydanticField(
        default=None, min_length=1, max_length=200_000, description="Shorthand for one user message"
    )
    messages: list[MessageIn] | None = PydanticField(default=None, min_length=1, max_length=200)
    model: ModelName | None = PydanticField(
        default=None, description="Model name; default: the defaultModel of the first provider"
    )
    max_tokens: int | None = PydanticField(default=None, ge=1, le=200_000)
    temperature: float | None = PydanticField(default=None, ge=0, le=2)
    stream: bool = PydanticField(
        default=False, description="Answer as server-sent events (generate only)"
    )

    @model_validator(mode="after")
    def _one_input(self) -> Self:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("send exactly one of prompt or messages")
        return self


class UsagePublic(BaseModel):
    """Tokens of one call."""

    input_tokens: int
    output_tokens: int
    total_tokens: int
    estimated: bool = PydanticField(description="True when the provider reported no usage")


class GenerationPublic(BaseModel):
    """The answer of `POST /v1/ai/generate` (and a job's result)."""

    id: uuid.UUID
    provider: str
    model: str
    text: str
    finish_reason: str | None
    usage: UsagePublic
    cost_usd: str = PydanticField(description="Decimal string, from the AIProvider prices")
    latency_ms: int
    attempts: list[dict[str, Any]] = PydanticField(
        description="Failed provider attempts before the answer (fallbacks, retries)"
    )


class HistoryItem(BaseModel):
    """One history record."""

    id: uuid.UUID
    created_at: datetime
    provider: str | None
    model: str
    stream: bool
    job_id: uuid.UUID | None
    outcome: str
    error_code: str | None
    usage: UsagePublic
    cost_usd: str
    latency_ms: int
    ttft_ms: int | None
    prompt: str | None
    response: str | None
    prompt_chars: int
    response_chars: int


class HistoryPage(BaseModel):
    """A page of history, newest first; pass `next_cursor` as `cursor`."""

    data: list[HistoryItem]
    next_cursor: str | None


class HistoryQuery(BaseModel):
    """Filters of `GET /v1/ai/history` (combined with AND)."""

    model_config = ConfigDict(extra="forbid")

    limit: int = PydanticField(default=20, ge=1, le=100)
    cursor: Annotated[str, StringConstraints(max_length=200)] | None = None
    model: ModelName | None = None
    provider: Annotated[str, StringConstraints(max_length=63)] | None = None
    outcome: Literal["success", "error", "cancelled"] | None = None
    stream: bool | None = None
    job_id: uuid.UUID | None = None
    since: ClientDatetime | None = None
    until: ClientDatetime | None = None


class SpendQuery(BaseModel):
    """Range of `GET /v1/ai/spend` (whole UTC days, both included; default the last 30)."""

    model_config = ConfigDict(extra="forbid")

    since: date | None = None
    until: date | None = None


class AdminSpendQuery(SpendQuery):
    """`GET /v1/admin/ai-spend`: spend per user or per API key, biggest first."""

    group_by: Literal["user", "api_key"] = "user"
    limit: int = PydanticField(default=100, ge=1, le=1000)


class SpendTotals(BaseModel):
    """Calls, tokens and cost (a decimal string) of some history rows."""

    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: str


class SpendDay(SpendTotals):
    """One UTC day and model."""

    day: str
    model: str


class SpendPublic(BaseModel):
    """The caller's spend, summed from their history rows."""

    since: str
    until: str
    total: SpendTotals
    days: list[SpendDay]


class CredentialBody(BaseModel):
    """Body of `PUT /v1/admin/ai-providers/{name}/credentials` (write-only)."""

    model_config = ConfigDict(extra="forbid")

    apiKey: str = PydanticField(min_length=1, max_length=4096, repr=False)


class CredentialStored(BaseModel):
    """What storing a key returns: never the key, only its version hash."""

    name: str
    credential_version: str
    generation: int
