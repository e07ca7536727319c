"""What a gateway call gives back: a finished answer, embeddings, or an open stream."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any

from app.ai.breaker import CircuitBreaker
from app.ai.deadline import deadline_failure, expired
from app.ai.errors import ProviderFailure
from app.ai.providers import ProviderStream
from app.ai.types import Completion, Embeddings, StreamEvent
from app.core.specs.ai_provider import ModelPrice


@dataclass
class Generation:
    """A finished non-streamed call."""

    provider: str
    model: str
    price: ModelPrice
    completion: Completion
    latency: float
    failures: list[ProviderFailure] = field(default_factory=list)

    @cached_property
    def cost(self) -> Decimal:
        """Cost of the call's usage at the model's prices."""
        usage = self.completion.usage
        assert usage is not None
        return self.price.cost(usage.input_tokens, usage.output_tokens)


@dataclass
class EmbeddingResult:
    """A finished embeddings call."""

    provider: str
    model: str
    price: ModelPrice
    embeddings: Embeddings
    latency: float
    failures: list[ProviderFailure] = field(default_factory=list)

    @cached_property
    def cost(self) -> Decimal:
        """Cost of the input tokens at the model's input price."""
        usage = self.embeddings.usage
        return self.price.cost(usage.input_tokens, 0) if usage is not None else Decimal(0)


@dataclass
class OpenStream:
    """A stream whose first event is read; iterate `events()` once, then `close()`."""

    provider: str
    model: str
    price: ModelPrice
    started: float
    first: StreamEvent
    upstream: ProviderStream
    rest: Iterator[StreamEvent]
    failures: list[ProviderFailure] = field(default_factory=list)
    #: `time.monotonic()` instant at which the stream is cut (`AI_STREAM_MAX_SECONDS`).
    deadline: float | None = None
    breaker: CircuitBreaker | None = None
    #: The attempt's GenAI span, ended when the stream is accounted (app/ai/genai_trace.py).
    span: Any = None

    def events(self) -> Iterator[StreamEvent]:
        """The first event, then the rest as they arrive (may raise `ProviderFailure`).

        Past the deadline the next event raises a `DEADLINE` failure instead (HTTP
        providers also check every chunk received, between events).
        """
        yield self.first
        for event in self.rest:
            if expired(self.deadline):
                raise deadline_failure(self.provider)
            yield event

    def finished(self) -> None:
        """The provider sent the whole answer: a success for its breaker."""
        if self.breaker is not None:
            self.breaker.success()

    def failed(self, failure: ProviderFailure) -> None:
        """Count a failure after the first event against the provider's breaker, if it is
        the provider's doing (a stall, a cut connection, garbage); our deadline is not.

        A client that leaves reports nothing either: the breaker keeps its count.
        """
        if self.breaker is not None and failure.trips_breaker:
            self.breaker.failure()

    def close(self) -> None:
        """Close the upstream connection (safe to call twice)."""
        self.upstream.close()
