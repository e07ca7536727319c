"""Generate text for a caller: budget, gateway call, accounting, history.

    result = generate(caller=..., body=..., session=..., settings=...)     # sync
    stream = open_stream(caller=..., body=..., ...)                        # SSE
    return Response(stream.sse(), mimetype="text/event-stream")

Budgets (app/ratelimit/tokens.py): the estimate (prompt + max_tokens) is reserved
before the call and settled with the real usage after it, so an exhausted budget refuses
the call up front (429 `AI_TOKEN_LIMIT`) and a cheap answer gives the rest back. A
stream is settled in its `finally`: completed streams are charged the provider's usage,
cut ones what reached the client, never $0 (LiteLLM#37923).

Limits before any of that: the prompt's size (413 `AI_PROMPT_TOO_LARGE`, checked when a
`Call` is built, so jobs too) and the caller's running generations (429
`RATE_CONCURRENCY_LIMIT`, app/ai/concurrency.py; generate only: jobs are bounded by
the worker pool).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal

from flask import g, has_request_context
from opentelemetry import trace
from sqlmodel import Session

from app.ai import concurrency, spend
from app.ai.gateway import Gateway
from app.ai.history import queue as history_queue
from app.ai.history import records as ai_history
from app.ai.history.records import Owner, format_cost
from app.ai.models import (
    OUTCOME_ERROR,
    OUTCOME_SUCCESS,
    GenerateBody,
    GenerationPublic,
    UsagePublic,
)
from app.ai.registry import Target
from app.ai.results import Generation
from app.ai.tokens import reservation_for
from app.ai.types import ChatRequest, Message, Usage
from app.auth.caller import Caller
from app.core.errors import ApiError, ErrorCode
from app.core.observability import metrics
from app.core.warnings import WarningLevel, warn
from app.ratelimit.service import caller_roles
from app.ratelimit.tokens import Reservation, budgeted, reserve_money, reserve_tokens, settle
from app.settings import Settings

GENERATE_PATH: Final = "/v1/ai/generate"
#: Where a call came in: `/v{n}/ai/generate` and jobs, or a compatible surface.
Surface = Literal["generate", "openai", "anthropic"]
USAGE_ESTIMATED: Final = "AI_USAGE_ESTIMATED"
FALLBACK_USED: Final = "AI_PROVIDER_FALLBACK"


def owner_of(caller: Caller) -> Owner:
    """History/job owner of `caller`: always the user, plus the API key used if any."""
    return Owner(owner=f"user:{caller.subject}", user_id=caller.subject, api_key_id=caller.key_id)


def current_trace_id() -> str | None:
    """Hex trace id of the active span (None when there is none)."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def prompt_chars(body: GenerateBody) -> int:
    """Characters of the prompt, every message's content together."""
    if body.messages is not None:
        return sum(len(m.content) for m in body.messages)
    return len(body.prompt or "")


def check_prompt_size(body: GenerateBody, settings: Settings) -> None:
    """413 `AI_PROMPT_TOO_LARGE` when the prompt is over `AI_MAX_PROMPT_CHARS`.

    Each field has its own bound (app/ai/models.py), but 200 messages of 200k characters
    fit in a body: this bounds what every later step (budget estimate, provider call,
    history redaction) has to handle.
    """
    check_chars(prompt_chars(body), settings)


def request_chars(request: ChatRequest) -> int:
    """Characters of a neutral request: every message's text and tool definitions."""
    chars = sum(len(m.text) for m in request.messages)
    return chars + sum(len(t.name) + len(t.description or "") for t in request.tools)


def check_chars(chars: int, settings: Settings) -> None:
    """413 `AI_PROMPT_TOO_LARGE` when `chars` is over `AI_MAX_PROMPT_CHARS`."""
    limit = settings.ai_max_prompt_chars
    if chars > limit:
        raise ApiError(
            f"The prompt is {chars} characters; at most {limit} are accepted.",
            code=ErrorCode.AI_PROMPT_TOO_LARGE,
            details={"prompt_chars": chars, "max_prompt_chars": limit},
        )


def chat_request(body: GenerateBody, *, model: str, settings: Settings) -> ChatRequest:
    """The gateway request of a validated body."""
    if body.messages is not None:
        messages = tuple(Message(m.role, m.content) for m in body.messages)
    else:
        messages = (Message("user", body.prompt or ""),)
    return ChatRequest(
        model=model,
        messages=messages,
        max_tokens=body.max_tokens or settings.ai_default_max_tokens,
        temperature=body.temperature,
    )


def count_usage(provider: str, model: str, usage: Usage, cost: Decimal) -> None:
    """Add one call's tokens and cost to the AI metrics."""
    metrics.AI_TOKENS.labels(provider, model, "input").inc(usage.input_tokens)
    metrics.AI_TOKENS.labels(provider, model, "output").inc(usage.output_tokens)
    if usage.estimated:
        metrics.AI_TOKENS_ESTIMATED.labels(provider, model).inc(usage.total)
    if cost:
        metrics.AI_COST.labels(provider, model).inc(float(cost))


def warn_about(usage: Usage, attempts: list[dict[str, Any]]) -> None:
    """Envelope warnings for estimated usage and for answers that needed a fallback."""
    if not has_request_context():
        return
    if usage.estimated:
        warn(
            USAGE_ESTIMATED,
            "The provider reported no token usage; tokens and cost are estimates.",
            WarningLevel.INFO,
        )
    if attempts:
        warn(
            FALLBACK_USED,
            "The first choice of provider failed; another attempt answered.",
            WarningLevel.INFO,
            attempts=attempts,
        )


def request_id_of() -> str | None:
    """The current request's id (None in a worker)."""
    return g.get("request_id") if has_request_context() else None


@dataclass
class Call:
    """Everything one generation needs, shared by the sync, stream and job paths.

    Built from our own body (`/v{n}/ai/generate`, jobs) or from a neutral `chat` request a
    compatible surface translated (app/ai/compat/); either way the prompt-size limit,
    routing (with the caller's roles), budgets, slots and history are the same code.
    """

    caller: Caller
    body: GenerateBody | None
    settings: Settings
    gateway: Gateway
    path: str = GENERATE_PATH
    job_id: uuid.UUID | None = None
    reservation: Reservation | None = None
    chat: ChatRequest | None = None
    surface: Surface = "generate"
    #: The money reserved from `usd` budgets while a provider call runs.
    spend: Reservation | None = None
    request: ChatRequest = field(init=False)
    candidates: tuple[Target, ...] = field(init=False)

    def __post_init__(self) -> None:
        if self.chat is not None:
            check_chars(request_chars(self.chat), self.settings)
            self.request = self.chat
        else:
            assert self.body is not None
            check_prompt_size(self.body, self.settings)
            model = self.gateway.resolve_model(self.body.model)
            self.request = chat_request(self.body, model=model, settings=self.settings)
        self.candidates = self.gateway.route(self.request, caller_roles(self.caller))

    def reserve(self) -> None:
        """Take the estimate from the caller's token budgets (429 when spent)."""
        if self.reservation is None:
            self.reservation = reserve_tokens(
                self.caller, reservation_for(self.request), path=self.path, method="POST"
            )

    def take_slot(self) -> concurrency.Slot:
        """One of the caller's concurrent-generation slots (429 when all are taken)."""
        return concurrency.acquire(
            self.gateway.limits_store,
            owner_of(self.caller).owner,
            limit=self.settings.ai_max_concurrent_per_caller,
            lease_seconds=concurrency.lease_seconds(self.settings),
            beside_journal=self.gateway.slots_beside_journal,
        )

    def settle(self, used: int) -> None:
        """Charge `used` tokens against the reservation (refund or top-up)."""
        if self.reservation is not None:
            settle(self.reservation, used)
            self.reservation = None

    def reserve_spend(self) -> None:
        """Take the most the call can cost from the caller's money budgets (429
        `AI_BUDGET_EXCEEDED` when one cannot cover it)."""
        if self.spend is None:
            if not budgeted("usd"):  # no money budget: nothing to price or reserve
                self.spend = Reservation(tokens=0, entries=())
                return
            worst = spend.worst_cost(self.request, self.candidates)
            self.spend = reserve_money(
                self.caller, spend.micro_usd(worst), path=self.path, method="POST"
            )

    def reserve_budgets(self) -> None:
        """Reserve tokens, then money; a refused money budget gives the tokens back."""
        self.reserve()
        try:
            self.reserve_spend()
        except BaseException:
            self.settle(0)
            raise

    def settle_spend(self, cost: Decimal) -> None:
        """Charge the call's real cost against the money reservation."""
        if self.spend is not None:
            settle(self.spend, spend.micro_usd(cost))
            self.spend = None

    def failure_row(self, error: ApiError, *, stream: bool = False) -> dict[str, Any]:
        """History row of a call no provider answered."""
        return ai_history.row(
            surface=self.surface,
            settings=self.settings,
            owner=owner_of(self.caller),
            model=self.request.model,
            provider=None,
            outcome=OUTCOME_ERROR,
            prompt=self.request.prompt_text,
            response=None,
            error_code=error.code.value,
            attempts=list(error.details.get("attempts", [])),
            stream=stream,
            job_id=self.job_id,
            request_id=request_id_of(),
            trace_id=current_trace_id(),
        )


def success_row(*, call: Call, result: Generation) -> tuple[dict[str, Any], GenerationPublic]:
    """History row and public answer of an answered call (adds the envelope warnings)."""
    usage = result.completion.usage
    assert usage is not None
    attempts = [f.describe() for f in result.failures]
    latency_ms = round(result.latency * 1000)
    values = ai_history.row(
        settings=call.settings,
        owner=owner_of(call.caller),
        model=call.request.model,
        upstream_model=result.model,
        surface=call.surface,
        provider=result.provider,
        outcome=OUTCOME_SUCCESS,
        prompt=call.request.prompt_text,
        response=result.completion.recorded,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        estimated=usage.estimated,
        cost=result.cost,
        latency_ms=latency_ms,
        attempts=attempts,
        job_id=call.job_id,
        request_id=request_id_of(),
        trace_id=current_trace_id(),
    )
    warn_about(usage, attempts)
    public = GenerationPublic(
        id=values["id"],
        provider=result.provider,
        model=call.request.model,
        text=result.completion.text,
        finish_reason=result.completion.finish_reason,
        usage=usage_public(usage),
        cost_usd=format_cost(result.cost),
        latency_ms=latency_ms,
        attempts=attempts,
    )
    return values, public


def record_success(*, call: Call, result: Generation, session: Session) -> GenerationPublic:
    """Add the history row of an answered call to `session` (no commit, no settling).

    For jobs: their row is written in the job's own transaction, with its result.
    """
    values, public = success_row(call=call, result=result)
    ai_history.insert_rows(session, [values])
    return public


def complete(call: Call) -> Generation:
    """The gateway call of `call` within its money reservation (reserved, then settled
    with the real cost), its tokens and cost counted in the metrics."""
    call.reserve_spend()
    try:
        result = call.gateway.complete(call.request, call.candidates)
    except BaseException:
        call.settle_spend(Decimal(0))
        raise
    call.settle_spend(result.cost)
    usage = result.completion.usage
    assert usage is not None
    count_usage(result.provider, result.model, usage, result.cost)
    return result


def generate(*, call: Call, session: Callable[[], Session]) -> GenerationPublic:
    """One non-streamed generation (see `answer`), as `/v{n}/ai/generate` returns it."""
    return answer(call=call, session=session)[1]


def answer(*, call: Call, session: Callable[[], Session]) -> tuple[Generation, GenerationPublic]:
    """One non-streamed generation: take a slot, reserve tokens and money, call, queue the
    history row, settle, give the slot back.

    The row goes to the history journal (one Redis round trip; written to PostgreSQL
    by the drainer thread after the answer, app/ai/history/queue.py); `session()`
    is only opened when Redis cannot take it. A refused budget leaves no row.
    """
    slot = call.take_slot()
    try:
        call.reserve_budgets()
        try:
            result = complete(call)
        except ApiError as error:
            call.settle(0)
            history_queue.submit(values=call.failure_row(error), session=session, slot=slot)
            raise
        values, public = success_row(call=call, result=result)
        history_queue.submit(values=values, session=session, slot=slot)
        call.settle(public.usage.total_tokens)
        return result, public
    finally:
        slot.release()


def usage_public(usage: Usage) -> UsagePublic:
    return UsagePublic(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total,
        estimated=usage.estimated,
    )
