"""One client span per provider attempt, with OpenTelemetry's GenAI attributes.

Semantic conventions: opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/ (span name
`{gen_ai.operation.name} {gen_ai.request.model}`, kind CLIENT, `gen_ai.provider.name`,
`gen_ai.request.*`, `gen_ai.response.*`, `gen_ai.usage.*`, `error.type`). Prompts,
answers and tool arguments are never recorded (the conventions make content opt-in),
nor is anything about the caller's key. A streamed attempt's span stays open until the
stream ends (`finish_stream_span`), so its usage is the usage actually charged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from app.ai.errors import ProviderFailure
from app.ai.registry import Target
from app.ai.types import ChatRequest, Completion, Usage
from app.core.specs.ai_provider import ProviderType

_tracer = trace.get_tracer("structured_api.ai")

#: `gen_ai.provider.name` per wire format (the conventions' well-known values).
PROVIDER_NAMES: Final = {
    ProviderType.OPENAI_COMPATIBLE: "openai",
    ProviderType.OPENAI: "openai",
    ProviderType.AZURE_OPENAI: "azure.ai.openai",
    ProviderType.ANTHROPIC: "anthropic",
    ProviderType.ECHO: "structured_api.echo",
}


def _request_attributes(operation: str, target: Target, request: ChatRequest) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": PROVIDER_NAMES[target.handle.spec.type],
        "gen_ai.request.model": request.model,
        "sapi.ai.provider": target.name,
    }
    if operation == "chat":
        attributes["gen_ai.request.max_tokens"] = request.max_tokens
        optional = {
            "gen_ai.request.temperature": request.temperature,
            "gen_ai.request.top_p": request.top_p,
            "gen_ai.request.top_k": request.top_k,
            "gen_ai.request.seed": request.seed,
        }
        attributes.update({k: v for k, v in optional.items() if v is not None})
        if request.stop:
            attributes["gen_ai.request.stop_sequences"] = list(request.stop)
        if request.response_format is not None:
            attributes["gen_ai.output.type"] = "json"
    return attributes


@contextlib.contextmanager
def gen_ai_span(
    operation: str, target: Target, request: ChatRequest, *, stream: bool = False
) -> Iterator[Span]:
    """A CLIENT span around one attempt (current inside the block, so the httpx span of
    the provider call is its child). Ended when the block ends, except for a stream that
    opened: `finish_stream_span` ends it.

    With no tracer provider installed (tracing off, the chart's default) every span would
    be a non-recording no-op: the block gets `INVALID_SPAN` without building attributes
    or touching the context.
    """
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        yield trace.INVALID_SPAN
        return
    span = _tracer.start_span(
        f"{operation} {request.model}",
        kind=SpanKind.CLIENT,
        attributes=_request_attributes(operation, target, request),
    )
    try:
        with trace.use_span(span, end_on_exit=False):
            yield span
    except ProviderFailure as failure:
        span.set_attribute("error.type", failure.kind.value)
        span.set_status(Status(StatusCode.ERROR))
        span.end()
        raise
    except BaseException as exc:
        span.set_attribute("error.type", type(exc).__name__)
        span.set_status(Status(StatusCode.ERROR))
        span.end()
        raise
    if not stream:
        span.end()


def describe_usage(span: Span, usage: Usage | None, finish_reason: str | None) -> None:
    """Response attributes of a span (usage as reported, or as estimated)."""
    if not span.is_recording():
        return
    if usage is not None:
        span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
    if finish_reason:
        span.set_attribute("gen_ai.response.finish_reasons", [finish_reason])


def describe_completion(span: Span, completion: Completion) -> None:
    """Response attributes of a finished non-streamed answer."""
    describe_usage(span, completion.usage, completion.finish_reason)


def finish_stream_span(
    span: Span | None, usage: Usage, finish_reason: str | None, error: str | None
) -> None:
    """End a streamed attempt's span with what the stream delivered."""
    if span is None:
        return
    describe_usage(span, usage, finish_reason)
    if error is not None:
        span.set_attribute("error.type", error)
        span.set_status(Status(StatusCode.ERROR))
    span.end()
