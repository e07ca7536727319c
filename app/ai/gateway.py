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

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Final

from app.ai import provider_limits, routing
from app.ai.breaker import Breakers
from app.ai.errors import FailureKind, ProviderFailure, to_api_error
from app.ai.genai_trace import describe_completion, gen_ai_span
from app.ai.registry import ClientPool, ProviderHandle, Registry, Target, build_registry
from app.ai.results import EmbeddingResult, Generation, OpenStream
from app.ai.retry import backoff
from app.ai.tokens import estimated_usage, reservation_for
from app.ai.types import ChatRequest, Completion, Embeddings
from app.config_store.snapshot import Snapshot
from app.core.errors import ApiError, ErrorCode
from app.core.observability import metrics
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
        #: Whether `limits_store` is the Redis node of REDIS_URL, where the history journal
        #: is (no Cluster, no RATE_LIMIT_REDIS_URL elsewhere): app/ai/concurrency.py `Slot`.
        self.slots_beside_journal = False

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

    def resolve_model(self, model: str | None) -> str:
        """The model a request means (its own, else the default); 404 when there is none."""
        chosen = model or self.registry().default_model
        if not chosen:
            raise ApiError(
                "No AI provider is configured.",
                code=ErrorCode.AI_MODEL_NOT_FOUND,
                details={"model": None, "models": []},
            )
        return chosen

    def route(self, request: ChatRequest, roles: frozenset[str]) -> tuple[Target, ...]:
        """The targets that may answer `request`, in the order to try them (app/ai/routing.py)."""
        return routing.route(self.registry(), request, roles)

    def route_embeddings(self, model: str, roles: frozenset[str]) -> tuple[Target, ...]:
        """The targets of `model` that can embed, in the order to try them."""
        return routing.route_embeddings(self.registry(), model, roles)

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
        targets: tuple[Target, ...],
        call: Callable[[Target, ChatRequest, float], object],
        *,
        until: float | None = None,
        streaming: bool = False,
    ) -> tuple[Target, object, list[ProviderFailure]]:
        """Run `call(target, request for it, timeout)` with retries and fallback; the first
        success wins. The request each target gets names the target's own model.

        Within `AI_REQUEST_DEADLINE`, or until `until` (a `time.monotonic()` instant) if
        that comes first. A `streaming` success is only the first event: the breaker hears
        the verdict when the stream ends (`OpenStream.failed` / `finished`).
        """
        deadline = time.monotonic() + self.settings.ai_request_deadline
        if until is not None:
            deadline = min(deadline, until)
        failures: list[ProviderFailure] = []
        previous: str | None = None
        for target in targets:
            handle = target.handle
            upstream = (
                request if target.model == request.model
                else dataclasses.replace(request, model=target.model)
            )  # fmt: skip
            skipped = self._skip_reason(handle, upstream)
            if skipped is not None:
                self._record_failure(handle, target.model, skipped, failures)
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
                    value = call(target, upstream, remaining)
                except ProviderFailure as failure:
                    metrics.AI_DURATION.labels(handle.name, target.model).observe(
                        time.perf_counter() - started
                    )
                    if failure.trips_breaker:
                        breaker.failure()
                    else:
                        breaker.release()
                    self._record_failure(handle, target.model, failure, failures)
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
                return target, value, failures
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

    def complete(self, request: ChatRequest, targets: tuple[Target, ...]) -> Generation:
        """A non-streamed answer from the first target that gives one."""
        started = time.perf_counter()

        def call(target: Target, upstream: ChatRequest, remaining: float) -> Completion:
            provider = target.handle.provider
            assert provider is not None
            with gen_ai_span("chat", target, upstream) as span:
                completion = provider.complete(upstream, timeout=remaining)
                describe_completion(span, completion)
            return completion

        target, value, failures = self._attempts(request, targets, call)
        assert isinstance(value, Completion)
        completion = value
        if completion.usage is None:
            completion = dataclasses.replace(
                completion, usage=estimated_usage(request, completion.text)
            )
        latency = time.perf_counter() - started
        metrics.AI_REQUESTS.labels(target.name, target.model, "success").inc()
        metrics.AI_DURATION.labels(target.name, target.model).observe(latency)
        return Generation(target.name, target.model, target.price, completion, latency, failures)

    def embed(
        self,
        model: str,
        inputs: tuple[str, ...],
        targets: tuple[Target, ...],
        *,
        dimensions: int | None = None,
    ) -> EmbeddingResult:
        """Embeddings from the first target that gives them (retries, breakers, fallback)."""
        started = time.perf_counter()
        # Reservations and provider limits count the inputs as one prompt.
        probe = ChatRequest(model, (), max_tokens=0)

        def call(target: Target, upstream: ChatRequest, remaining: float) -> Embeddings:
            provider = target.handle.provider
            assert provider is not None
            with gen_ai_span("embeddings", target, upstream):
                return provider.embed(
                    upstream.model, inputs, dimensions=dimensions, timeout=remaining
                )

        target, value, failures = self._attempts(probe, targets, call)
        assert isinstance(value, Embeddings)
        latency = time.perf_counter() - started
        metrics.AI_REQUESTS.labels(target.name, target.model, "success").inc()
        metrics.AI_DURATION.labels(target.name, target.model).observe(latency)
        return EmbeddingResult(target.name, target.model, target.price, value, latency, failures)

    def open_stream(self, request: ChatRequest, targets: tuple[Target, ...]) -> OpenStream:
        """Open a stream and read its first event, falling back until one target answers.

        The stream may run `AI_STREAM_MAX_SECONDS` from now, its opening included.
        """
        started = time.perf_counter()
        deadline = time.monotonic() + self.settings.ai_stream_max_seconds

        def call(target: Target, upstream: ChatRequest, remaining: float) -> OpenStream:
            handle = target.handle
            assert handle.provider is not None
            with gen_ai_span("chat", target, upstream, stream=True) as span:
                opened = handle.provider.stream(upstream, timeout=remaining, deadline=deadline)
                events = iter(opened)
                try:
                    first = next(events)
                except StopIteration:
                    opened.close()
                    raise ProviderFailure(
                        FailureKind.TRUNCATED, provider=handle.name, detail="empty stream"
                    ) from None
                except BaseException:
                    opened.close()
                    raise
            return OpenStream(
                handle.name, target.model, target.price, started, first, opened, events,
                deadline=deadline, breaker=self.breakers.get(handle.name), span=span,
            )  # fmt: skip

        _, value, failures = self._attempts(request, targets, call, until=deadline, streaming=True)
        assert isinstance(value, OpenStream)
        value.failures = failures
        return value

    def close(self) -> None:
        """Close pooled connections."""
        self.clients.close()
