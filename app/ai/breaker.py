"""A circuit breaker per provider: closed -> open after N failures -> one probe -> closed.

State lives in the process (each gunicorn worker and Celery child keeps its own), which
is deliberate: a breaker must answer without a network round trip, and a provider that
fails for one process fails for the others within a few calls. The gauge
`sapi_ai_circuit_breaker_state` (multiprocess mode `livemax`) shows the worst state any
live process holds.

Half-open admits exactly one probe; its outcome closes the breaker or opens it again.
A probe that never reports (its caller crashed) is forgotten after `open_seconds`.

A stream is judged at its end, not at its first event: a provider that answers and then
stalls mid-stream, every time, must open its breaker too. Its first event only settles a
half-open probe (`answered`); then the end reports `success`, `failure` (the provider's
fault) or nothing (cut by our deadline or left by the client: not the provider's doing).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from app.core.observability import metrics

CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"
_GAUGE: Final = {
    CLOSED: metrics.BREAKER_CLOSED,
    OPEN: metrics.BREAKER_OPEN,
    HALF_OPEN: metrics.BREAKER_HALF_OPEN,
}


@dataclass
class CircuitBreaker:
    """Breaker of one provider in this process."""

    provider: str
    failure_threshold: int
    open_seconds: float
    clock: Callable[[], float] = time.monotonic
    state: str = CLOSED
    failures: int = 0
    opened_at: float = 0.0
    probe_started: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _set(self, state: str) -> None:
        if state != self.state:
            self.state = state
            metrics.AI_BREAKER_STATE.labels(self.provider).set(_GAUGE[state])

    def allow(self) -> bool:
        """May a call go to the provider now? In half-open, only the single probe may."""
        with self._lock:
            now = self.clock()
            if self.state == CLOSED:
                return True
            if self.state == OPEN:
                if now - self.opened_at < self.open_seconds:
                    return False
                self._set(HALF_OPEN)
                self.probe_started = now
                return True
            # Half-open: one probe at a time; a probe lost for open_seconds is replaced.
            if self.probe_started is not None and now - self.probe_started < self.open_seconds:
                return False
            self.probe_started = now
            return True

    def retry_after(self) -> float:
        """Seconds until an open breaker admits a probe (0 when it admits calls)."""
        with self._lock:
            if self.state != OPEN:
                return 0.0
            return max(0.0, self.open_seconds - (self.clock() - self.opened_at))

    def success(self) -> None:
        """A call succeeded: close."""
        with self._lock:
            self.failures = 0
            self.probe_started = None
            self._set(CLOSED)

    def answered(self) -> None:
        """A stream's first event arrived: a half-open probe closes the breaker; the count
        of consecutive failures waits for the stream's end."""
        with self._lock:
            self.probe_started = None
            if self.state == HALF_OPEN:
                self.failures = 0
                self._set(CLOSED)

    def failure(self) -> None:
        """A call failed: count it; open at the threshold or when the probe failed."""
        with self._lock:
            self.failures += 1
            if self.state == HALF_OPEN or self.failures >= self.failure_threshold:
                self.opened_at = self.clock()
                self.probe_started = None
                self._set(OPEN)

    def release(self) -> None:
        """A call ended with neither verdict (e.g. the client left): free the probe slot."""
        with self._lock:
            self.probe_started = None


class Breakers:
    """The breakers of this process, one per provider name, created on first use."""

    def __init__(self, *, failure_threshold: int, open_seconds: float) -> None:
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds
        self._by_name: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def get(self, provider: str) -> CircuitBreaker:
        """The breaker of `provider`."""
        breaker = self._by_name.get(provider)
        if breaker is None:
            with self._lock:
                breaker = self._by_name.setdefault(
                    provider,
                    CircuitBreaker(provider, self.failure_threshold, self.open_seconds),
                )
        return breaker

    def reset(self) -> None:
        """Forget every breaker (after fork: the parent's state is not this process's)."""
        with self._lock:
            self._by_name = {}
