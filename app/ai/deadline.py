"""The overall deadline of a stream (`AI_STREAM_MAX_SECONDS`), checked as bytes arrive.

A provider's `timeoutSeconds` bounds each read, not the stream: a provider that keeps
sending (tokens of a huge `max_tokens`, keep-alive comments, an event dribbled a byte at
a time) would hold the request thread for as long as it likes. The check runs on every
chunk the socket delivers, below the SSE parser, so none of those shapes escapes it.

A stream cut here fails with `FailureKind.DEADLINE`: our limit, not the provider's
fault, so it is neither retried nor counted by the provider's circuit breaker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx

from app.ai.errors import FailureKind, ProviderFailure


def expired(deadline: float | None) -> bool:
    """True once `deadline` (a `time.monotonic()` instant; None = none) has passed."""
    return deadline is not None and time.monotonic() >= deadline


def deadline_failure(provider: str) -> ProviderFailure:
    """The failure of a stream cut by its overall deadline."""
    return ProviderFailure(FailureKind.DEADLINE, provider=provider, detail="stream deadline")


class DeadlineByteStream(httpx.SyncByteStream):
    """A response body that raises `deadline_failure` at the first chunk past `deadline`."""

    def __init__(self, inner: httpx.SyncByteStream, *, deadline: float, provider: str) -> None:
        self.inner = inner
        self.deadline = deadline
        self.provider = provider

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            if expired(self.deadline):
                raise deadline_failure(self.provider)
            yield chunk

    def close(self) -> None:
        """Close the upstream body (the connection goes back to the pool or is closed)."""
        self.inner.close()


def bounded(response: httpx.Response, *, deadline: float | None, provider: str) -> None:
    """Make `response`'s body stop at `deadline` (before it is read; None = no deadline)."""
    if deadline is not None and isinstance(response.stream, httpx.SyncByteStream):
        response.stream = DeadlineByteStream(response.stream, deadline=deadline, provider=provider)
