"""Streamed generation: provider events in, our server-sent events out, accounted once.

Events sent to the client: `start` (id, provider, model), `delta` (text), then `done`
(usage, cost) or `error` (code). Whatever ends the stream (the provider finishing, the
provider failing, `AI_STREAM_MAX_SECONDS` running out, or the client going away, which
the WSGI server reports by closing this generator) the `finally` block closes the
upstream connection, settles the budget, queues one history row (the journal, as for
sync calls) and gives the caller's concurrency slot back: a completed stream with the
provider's usage, a cut one with the tokens of what the client actually received
(marked estimated).

Only the provider's own faults after the first event (a stall past its timeout, a cut
connection, an unreadable event) count against its circuit breaker: the deadline is
ours, and a client leaving is the client's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from sqlmodel import Session

from app.ai import concurrency
from app.ai.errors import FailureKind, ProviderFailure, to_api_error
from app.ai.genai_trace import finish_stream_span
from app.ai.generate import (
    Call,
    count_usage,
    current_trace_id,
    owner_of,
    request_id_of,
    usage_public,
    warn_about,
)
from app.ai.history import queue as history_queue
from app.ai.history import records as ai_history
from app.ai.history.records import format_cost
from app.ai.models import OUTCOME_CANCELLED, OUTCOME_ERROR, OUTCOME_SUCCESS
from app.ai.results import OpenStream
from app.ai.sse import format_event
from app.ai.tokens import merge_usage
from app.ai.types import StreamEvent, Usage
from app.core.errors import ApiError
from app.core.observability import metrics


@dataclass
class StreamState:
    """What a stream delivered so far."""

    chunks: int = 0
    parts: list[str] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    ttft: float | None = None
    outcome: str = OUTCOME_CANCELLED
    error: ProviderFailure | None = None

    @property
    def text(self) -> str:
        """Text delivered to the client (tool calls as `name(arguments)` pieces)."""
        return "".join(self.parts)

    def deliver(self, event: StreamEvent) -> None:
        """Record what one event gave the client, and the counts it reported."""
        if event.text:
            self.parts.append(event.text)
            self.chunks += 1
        for call in event.tool_calls:
            self.parts.append((call.name or "") + call.arguments)
            self.chunks += 1
        if event.input_tokens is not None:
            self.input_tokens = event.input_tokens
        if event.output_tokens is not None:
            self.output_tokens = event.output_tokens
        self.finish_reason = event.finish_reason or self.finish_reason


class StreamFormat(Protocol):
    """How one surface writes a stream: our SSE events, OpenAI chunks, Anthropic events.

    Each method returns the bytes to send (b"" for nothing). `event` sees every provider
    event; the text and tool-call pieces it writes are counted as delivered once the
    server asks for the next chunk.
    """

    def start(self) -> bytes: ...

    def event(self, event: StreamEvent) -> bytes: ...

    def done(self, usage: Usage, cost: Decimal, finish_reason: str | None) -> bytes: ...

    def error(self, error: ApiError, failure: ProviderFailure) -> bytes: ...


class GenerationStream:
    """An opened provider stream turned into a surface's events; accounts in `finally`."""

    def __init__(
        self,
        call: Call,
        opened: OpenStream,
        session_factory: Any,
        slot: concurrency.Slot | None = None,
    ) -> None:
        self.call = call
        self.opened = opened
        self.session_factory = session_factory
        self.slot = slot or concurrency.Slot()
        self.id = uuid.uuid4()
        self.request_id = request_id_of()
        self.trace_id = current_trace_id()
        # Taken now: the generator's `finally` may run after the app context is gone.
        self.journal = history_queue.journal()

    def sse(self) -> Iterator[bytes]:
        """Our events: `start`, `delta`..., then `done` (or `error`)."""
        return self.run(NativeFormat(self))

    def run(self, fmt: StreamFormat) -> Iterator[bytes]:
        """The stream in `fmt`'s shape; whatever ends it, `finally` accounts once."""
        opened, state = self.opened, StreamState()
        try:
            yield fmt.start()
            for event in opened.events():
                if (event.text or event.tool_calls) and state.ttft is None:
                    state.ttft = time.perf_counter() - opened.started
                    metrics.AI_TTFT.labels(opened.provider, opened.model).observe(state.ttft)
                chunk = fmt.event(event)
                if chunk:
                    yield chunk
                # Counted only once the server asked for the next chunk: it was sent.
                state.deliver(event)
                if event.done:
                    break
            state.outcome = OUTCOME_SUCCESS
            opened.finished()
            usage = self._usage(state)
            yield fmt.done(usage, opened.price.cost(usage.input_tokens, usage.output_tokens),
                           state.finish_reason)  # fmt: skip
        except ProviderFailure as failure:
            state.outcome, state.error = OUTCOME_ERROR, failure
            opened.failed(failure)
            side = "deadline" if failure.kind is FailureKind.DEADLINE else "provider"
            metrics.AI_STREAM_ENDS.labels(side).inc()
            yield fmt.error(to_api_error([failure], model=self.call.request.model), failure)
        finally:
            try:
                opened.close()
                if state.outcome == OUTCOME_CANCELLED:
                    metrics.AI_STREAM_ENDS.labels("client").inc()
                self._account(state)
            finally:
                self.slot.release()

    def _usage(self, state: StreamState) -> Usage:
        if state.outcome == OUTCOME_SUCCESS:
            return merge_usage(
                self.call.request,
                input_tokens=state.input_tokens,
                output_tokens=state.output_tokens,
                output_text=state.text,
                output_chunks=state.chunks,
            )
        # Cut short: only what reached the client counts as output (the provider's own
        # total, if it sent one, covers text the client never got).
        return merge_usage(
            self.call.request,
            input_tokens=state.input_tokens,
            output_tokens=None,
            output_text=state.text,
            output_chunks=state.chunks,
        )

    def _account(self, state: StreamState) -> None:
        opened, call = self.opened, self.call
        usage = self._usage(state)
        cost = opened.price.cost(usage.input_tokens, usage.output_tokens)
        call.settle(usage.total)
        call.settle_spend(cost)
        count_usage(opened.provider, opened.model, usage, cost)
        finish_stream_span(
            opened.span, usage, state.finish_reason,
            state.error.kind.value if state.error else None,
        )  # fmt: skip
        latency = time.perf_counter() - opened.started
        metrics.AI_DURATION.labels(opened.provider, opened.model).observe(latency)
        outcome_label = "success" if state.outcome == OUTCOME_SUCCESS else "error"
        if state.outcome == OUTCOME_CANCELLED:
            outcome_label = "cancelled"
        metrics.AI_REQUESTS.labels(opened.provider, opened.model, outcome_label).inc()
        # The failure that ended the stream goes with the attempts: the row says why.
        ended_by = [state.error] if state.error is not None else []
        values = ai_history.row(
            settings=call.settings,
            owner=owner_of(call.caller),
            model=call.request.model,
            upstream_model=opened.model,
            surface=call.surface,
            provider=opened.provider,
            outcome=state.outcome,
            prompt=call.request.prompt_text,
            response=state.text,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            estimated=usage.estimated,
            cost=cost,
            latency_ms=round(latency * 1000),
            ttft_ms=round(state.ttft * 1000) if state.ttft is not None else None,
            stream=True,
            error_code=to_api_error([state.error], model=call.request.model).code.value
            if state.error
            else None,
            attempts=[f.describe() for f in (*opened.failures, *ended_by)],
            request_id=self.request_id,
            trace_id=self.trace_id,
            row_id=self.id,
        )
        if history_queue.push(values, slot=self.slot, into=self.journal):
            return
        session: Session = self.session_factory()
        try:
            history_queue.write_inline(session, values)
        finally:
            session.close()


def open_stream(*, call: Call, session: Session, session_factory: Any) -> GenerationStream:
    """Take a slot, reserve, then open the provider stream (errors here are plain JSON
    responses); the stream gives the slot back when it ends."""
    slot = call.take_slot()
    try:
        call.reserve_budgets()
        try:
            opened = call.gateway.open_stream(call.request, call.candidates)
        except ApiError as error:
            call.settle(0)
            call.settle_spend(Decimal(0))
            history_queue.submit(values=call.failure_row(error, stream=True), session=session)
            raise
        except BaseException:
            call.settle(0)
            call.settle_spend(Decimal(0))
            raise
    except BaseException:
        slot.release()
        raise
    warn_about(Usage(0, 0), [f.describe() for f in opened.failures])
    return GenerationStream(call, opened, session_factory, slot)


class NativeFormat:
    """Our own SSE events (docs/ai.md, "Calling")."""

    def __init__(self, stream: GenerationStream) -> None:
        self.stream = stream

    def start(self) -> bytes:
        """`start`: ids, provider, model, failed attempts."""
        s = self.stream
        return format_event(
            "start",
            {"id": str(s.id), "provider": s.opened.provider, "model": s.call.request.model,
             "request_id": s.request_id,
             "attempts": [f.describe() for f in s.opened.failures]},
        )  # fmt: skip

    def event(self, event: StreamEvent) -> bytes:
        """`delta` for each piece of text."""
        return format_event("delta", {"text": event.text}) if event.text else b""

    def done(self, usage: Usage, cost: Decimal, finish_reason: str | None) -> bytes:
        """`done`: usage and cost."""
        return format_event(
            "done",
            {"id": str(self.stream.id), "finish_reason": finish_reason,
             "usage": usage_public(usage).model_dump(), "cost_usd": format_cost(cost)},
        )  # fmt: skip

    def error(self, error: ApiError, failure: ProviderFailure) -> bytes:
        """`error`: our code, message and the failure's reason."""
        return format_event(
            "error", {"code": error.code.value, "message": error.message, **failure.describe()}
        )
