"""The gateway: pick providers for a model, call them with retries, fall back, measure.

    gw = gateway()                                   # per app, per process
    result = gw.complete(request)                    # -> Generation, or raises ApiError
    opened = gw.open_stream(request)                 # -> OpenStream, first event already read

Order of one call: candidates of the model by priority -> skip those whose breaker is
open, whose credential is missing or whose own rpm/tpm is spent -> up to
`1 + maxRetries` attempts on the provider, retrying only 429/5xx/timeouts/dropped
connections after `Retry-After` or a jittered backoff -> on giving up, the next provider.
All of it within `AI_REQUEST_DEADLINE`. A stream falls back only until its first event
has been read (before anything reached the client); later failures end the stream, and
the whole stream ends at `AI_STREAM_MAX_SECONDS` (app/ai/deadline.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Final

from app.ai import provider_limits
from app.ai.breaker import Breakers, CircuitBreaker
from app.ai.deadline import deadline_failure, expired
from app.ai.errors import FailureKind, ProviderFailure, to_api_error
from app.ai.providers import ProviderStream
from app.ai.registry import ClientPool, ProviderHandle, Registry, build_registry
from app.ai.retry import backoff
from app.ai.tokens import estimated_usage, reservation_for
from app.ai.types import ChatRequest, Completion, StreamEvent
from app.config_store.snapshot import Snapshot
from app.core.errors import ApiError, ErrorCode
from app.core.observability import metrics
from app.core.specs.ai_provider import ModelPrice
from app.ratelimit.store import LimiterStore
from app.settings import Settings

log = logging.getLogger("structured_api.ai")

_OUTCOME: Final = {
    FailureKind.TIMEOUT: "timeout",
    FailureKind.RATE_LIMITED: "rate_limited",
    FailureKind.PROVIDER_LIMIT: "rate_limited",
    FailureKind.BREAKER_OPEN: "breaker_open",
}


def outcome_label(kind: FailureKind) -> str:
    """Metric label of a failure kind (a closed vocabulary)."""
    return _OUTCOME.get(kind, "error")


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


class Gateway:
    """Per-app, per-process AI gateway; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        snapshot: Callable[[], Snapshot],
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._snapshot = snapshot
        self.sleep = sleep
        self.clients = ClientPool()
        self.breakers = Breakers(
            failure_threshold=settings.ai_breaker_failures,
            open_seconds=settings.ai_breaker_open_seconds,
        )
        self._registry: Registry | None = None
        self._lock = threading.Lock()
        # The rate limiter's store (app/ai/__init__.py): provider limits and the
        # per-caller concurrency cap run their scripts on it.
        self.limits_store: LimiterStore | None = None

    # -- configuration ---------------------------------------------------------------------
    def registry(self) -> Registry:
        """The registry of the current config generation (rebuilt when it changes)."""
        snapshot = self._snapshot()
        held = self._registry
        if held is not None and held.generation == snapshot.generation:
            return held
        with self._lock:
            held = self._registry
            if held is None or held.generation != snapshot.generation:
                held = build_registry(snapshot, settings=self.settings, clients=self.clients)
                self._registry = held
        return held

    def resolve_model(self, model: str | None) -> tuple[str, tuple[ProviderHandle, ...]]:
        """The model to use and its candidates; 404 `AI_MODEL_NOT_FOUND` when none serve it."""
        registry = self.registry()
        chosen = model or registry.default_model
        candidates = registry.candidates(chosen) if chosen else ()
        if not candidates:
            raise ApiError(
                f"No configured provider serves model {chosen!r}."
                if chosen
                else "No AI provider is configured.",
                code=ErrorCode.AI_MODEL_NOT_FOUND,
                details={"model": chosen, "models": registry.models},
            )
        assert chosen is not None
        return chosen, candidates

    # -- calls -----------------------------------------------------------------------------
    def _skip_reason(self, handle: ProviderHandle, request: ChatRequest) -> ProviderFailure | None:
        if handle.provider is None:
            return ProviderFailure(
                handle.unusable or FailureKind.NO_CREDENTIAL, provider=handle.name
            )
        breaker = self.breakers.get(handle.name)
        if not breaker.allow():
            return ProviderFailure(
                FailureKind.BREAKER_OPEN, provider=handle.name, retry_after=breaker.retry_after()
            )
        if self.limits_store is not None:
            wait = provider_limits.take(
                self.limits_store, handle.name, handle.spec.limits, reservation_for(request)
            )
            if wait is not None:
                breaker.release()
                return ProviderFailure(
                    FailureKind.PROVIDER_LIMIT, provider=handle.name, retry_after=wait
                )
        return None

    def _attempts(
        self,
        request: ChatRequest,
        candidates: tuple[ProviderHandle, ...],
        call: Callable[[ProviderHandle, float], object],
        *,
        until: float | None = None,
        streaming: bool = False,
    ) -> tuple[ProviderHandle, object, list[ProviderFailure]]:
        """Run `call(handle, timeout)` with retries and fallback; the first success wins.

        Within `AI_REQUEST_DEADLINE`, or until `until` (a `time.monotonic()` instant) if
        that comes first. A `streaming` success is only the first event: the breaker hears
        the verdict when the stream ends (`OpenStream.failed` / `finished`).
        """
        deadline = time.monotonic() + self.settings.ai_request_deadline
        if until is not None:
            deadline = min(deadline, until)
        failures: list[ProviderFailure] = []
        previous: str | None = None
        for handle in candidates:
            skipped = self._skip_reason(handle, request)
            if skipped is not None:
                self._record_failure(handle, request.model, skipped, failures)
                previous = previous or handle.name
                continue
            if previous is not None and failures:
                metrics.AI_FALLBACKS.labels(
                    previous, handle.name, outcome_label(failures[-1].kind)
                ).inc()
            breaker = self.breakers.get(handle.name)
            for attempt in range(handle.spec.maxRetries + 1):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    failures.append(ProviderFailure(FailureKind.TIMEOUT, provider=handle.name))
                    raise to_api_error(failures, model=request.model)
                started = time.perf_counter()
                try:
                    value = call(handle, remaining)
                except ProviderFailure as failure:
                    metrics.AI_DURATION.labels(handle.name, request.model).observe(
                        time.perf_counter() - started
                    )
                    if failure.trips_breaker:
                        breaker.failure()
                    else:
                        breaker.release()
                    self._record_failure(handle, request.model, failure, failures)
                    if not self._should_retry(failure, attempt, handle, deadline):
                        break
                    if not breaker.allow():
                        break
                    continue
                except BaseException:
                    breaker.release()
                    raise
                if streaming:
                    breaker.answered()
                else:
                    breaker.success()
                return handle, value, failures
            previous = handle.name
        raise to_api_error(failures, model=request.model)

    def _should_retry(
        self, failure: ProviderFailure, attempt: int, handle: ProviderHandle, deadline: float
    ) -> bool:
        if not failure.retryable or attempt >= handle.spec.maxRetries:
            return False
        s = self.settings
        if failure.retry_after is not None:
            delay = failure.retry_after
        else:
            delay = backoff(attempt, base=s.ai_retry_base_seconds, cap=s.ai_retry_max_wait)
        # A provider asking for a long pause is better left for the next one.
        if delay > s.ai_retry_max_wait or time.monotonic() + delay >= deadline:
            return False
        self.sleep(delay)
        return True

    @staticmethod
    def _record_failure(
        handle: ProviderHandle, model: str, failure: ProviderFailure, into: list[ProviderFailure]
    ) -> None:
        failure.provider = failure.provider or handle.name
        into.append(failure)
        metrics.AI_REQUESTS.labels(handle.name, model, outcome_label(failure.kind)).inc()
        log.info(
            "AI provider call failed",
            extra={"provider": handle.name, "model": model, "reason": failure.kind.value,
                   "status": failure.status},
        )  # fmt: skip

    def complete(self, request: ChatRequest, candidates: tuple[ProviderHandle, ...]) -> Generation:
        """A non-streamed answer from the first provider that gives one."""
        started = time.perf_counter()

        def call(handle: ProviderHandle, remaining: float) -> Completion:
            assert handle.provider is not None
            return handle.provider.complete(request, timeout=remaining)

        handle, value, failures = self._attempts(request, candidates, call)
        assert isinstance(value, Completion)
        completion = value
        if completion.usage is None:
            completion = Completion(
                completion.text,
                estimated_usage(request, completion.text),
                completion.finish_reason,
            )
        latency = time.perf_counter() - started
        price = handle.spec.model(request.model)
        assert price is not None
        metrics.AI_REQUESTS.labels(handle.name, request.model, "success").inc()
        metrics.AI_DURATION.labels(handle.name, request.model).observe(latency)
        return Generation(handle.name, request.model, price, completion, latency, failures)

    def open_stream(
        self, request: ChatRequest, candidates: tuple[ProviderHandle, ...]
    ) -> OpenStream:
        """Open a stream and read its first event, falling back until one provider answers.

        The stream may run `AI_STREAM_MAX_SECONDS` from now, its opening included.
        """
        started = time.perf_counter()
        deadline = time.monotonic() + self.settings.ai_stream_max_seconds

        def call(handle: ProviderHandle, remaining: float) -> OpenStream:
            assert handle.provider is not None
            upstream = handle.provider.stream(request, timeout=remaining, deadline=deadline)
            events = iter(upstream)
            try:
                first = next(events)
            except StopIteration:
                upstream.close()
                raise ProviderFailure(
                    FailureKind.TRUNCATED, provider=handle.name, detail="empty stream"
                ) from None
            except BaseException:
                upstream.close()
                raise
            price = handle.spec.model(request.model)
            assert price is not None
            return OpenStream(
                handle.name, request.model, price, started, first, upstream, events,
                deadline=deadline, breaker=self.breakers.get(handle.name),
            )  # fmt: skip

        _, value, failures = self._attempts(
            request, candidates, call, until=deadline, streaming=True
        )
        assert isinstance(value, OpenStream)
        value.failures = failures
        return value

    def close(self) -> None:
        """Close pooled connections."""
        self.clients.close()
