"""Embeddings for a caller: the same slot, budgets, history and metrics as a generation.

The inputs count as the prompt (token estimate reserved, then settled with the
provider's usage); the cost is input tokens at the model's `inputCostPer1M`. One history
row per call (`response` empty: vectors are not kept).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from decimal import Decimal

from sqlmodel import Session

from app.ai import concurrency, spend
from app.ai.gateway import Gateway
from app.ai.generate import (
    GENERATE_PATH,
    Surface,
    count_usage,
    current_trace_id,
    owner_of,
    request_id_of,
    warn_about,
)
from app.ai.history import queue as history_queue
from app.ai.history import records as ai_history
from app.ai.models import OUTCOME_ERROR, OUTCOME_SUCCESS
from app.ai.results import EmbeddingResult
from app.ai.tokens import estimate_text
from app.ai.types import Usage
from app.auth.caller import Caller
from app.core.errors import ApiError, ErrorCode
from app.ratelimit.service import caller_roles
from app.ratelimit.tokens import reserve_money, reserve_tokens, settle
from app.settings import Settings


def embed(
    *,
    caller: Caller,
    settings: Settings,
    gateway: Gateway,
    model: str,
    inputs: tuple[str, ...],
    dimensions: int | None,
    session: Callable[[], Session],
    surface: Surface,
) -> tuple[EmbeddingResult, uuid.UUID]:
    """Embed `inputs` with `model`; returns the result and its history record's id."""
    chars = sum(len(i) for i in inputs)
    if chars > settings.ai_max_prompt_chars:
        raise ApiError(
            f"The input is {chars} characters; at most {settings.ai_max_prompt_chars} are "
            "accepted.",
            code=ErrorCode.AI_PROMPT_TOO_LARGE,
            details={"prompt_chars": chars, "max_prompt_chars": settings.ai_max_prompt_chars},
        )
    targets = gateway.route_embeddings(model, caller_roles(caller))
    estimate = sum(estimate_text(i) for i in inputs)
    worst = max((t.price.cost(estimate, 0) for t in targets), default=Decimal(0))
    owner = owner_of(caller)
    slot = concurrency.acquire(
        gateway.limits_store, owner.owner,
        limit=settings.ai_max_concurrent_per_caller,
        lease_seconds=concurrency.lease_seconds(settings),
        beside_journal=gateway.slots_beside_journal,
    )  # fmt: skip
    prompt = "\n".join(inputs)
    try:
        tokens = reserve_tokens(caller, estimate, path=GENERATE_PATH, method="POST")
        try:
            money = reserve_money(caller, spend.micro_usd(worst), path=GENERATE_PATH, method="POST")
        except BaseException:
            settle(tokens, 0)
            raise
        try:
            result = gateway.embed(model, inputs, targets, dimensions=dimensions)
        except ApiError as error:
            settle(tokens, 0)
            settle(money, 0)
            values = ai_history.row(
                settings=settings, owner=owner, model=model, provider=None,
                outcome=OUTCOME_ERROR, prompt=prompt, response=None,
                error_code=error.code.value, attempts=list(error.details.get("attempts", [])),
                request_id=request_id_of(), trace_id=current_trace_id(), surface=surface,
            )  # fmt: skip
            history_queue.submit(values=values, session=session, slot=slot)
            raise
        except BaseException:
            settle(tokens, 0)
            settle(money, 0)
            raise
        usage = result.embeddings.usage or Usage(estimate, 0, estimated=True)
        cost = result.price.cost(usage.input_tokens, 0)
        settle(tokens, usage.input_tokens)
        settle(money, spend.micro_usd(cost))
        count_usage(result.provider, result.model, usage, cost)
        attempts = [f.describe() for f in result.failures]
        warn_about(usage, attempts)
        values = ai_history.row(
            settings=settings, owner=owner, model=model, upstream_model=result.model,
            provider=result.provider, outcome=OUTCOME_SUCCESS, prompt=prompt, response="",
            input_tokens=usage.input_tokens, estimated=usage.estimated, cost=cost,
            latency_ms=round(result.latency * 1000), attempts=attempts,
            request_id=request_id_of(), trace_id=current_trace_id(), surface=surface,
        )  # fmt: skip
        history_queue.submit(values=values, session=session, slot=slot)
        if result.embeddings.usage is None:
            result.embeddings = dataclasses.replace(result.embeddings, usage=usage)
        return result, values["id"]
    finally:
        slot.release()
