"""Provider failures, classified once, and their mapping to the `AI_*` error codes.

A failure says whether retrying the same provider may help (`retryable`: 429, 5xx,
timeouts, dropped connections) and whether it counts against the provider's circuit
breaker. The provider's own error text is never kept: some providers echo part of the
API key in it (OpenAI's "Incorrect API key provided: sk-ab***yz"), and nothing of a key
may reach a log line or a response (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from app.core.errors import ApiError, ErrorCode


class FailureKind(StrEnum):
    """Why a provider call failed."""

    TIMEOUT = "timeout"
    CONNECT = "connect"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    BAD_RESPONSE = "bad_response"
    TRUNCATED = "truncated"
    AUTH = "auth"
    CLIENT_ERROR = "client_error"
    #: The provider called the request itself invalid (400, 422): the caller must change it.
    REJECTED = "rejected"
    NO_CREDENTIAL = "no_credential"
    BREAKER_OPEN = "breaker_open"
    PROVIDER_LIMIT = "provider_limit"
    #: Our own overall deadline cut the call (AI_STREAM_MAX_SECONDS): not the provider's
    #: doing, so neither retried nor counted by its breaker.
    DEADLINE = "deadline"
    #: baseURL refused by the egress policy (app/core/egress.py): never called.
    ORIGIN_REFUSED = "origin_refused"


RETRYABLE: Final = frozenset(
    {
        FailureKind.TIMEOUT,
        FailureKind.CONNECT,
        FailureKind.RATE_LIMITED,
        FailureKind.SERVER_ERROR,
        FailureKind.TRUNCATED,
    }
)
# What trips a breaker: the provider being unwell, not our request or our key being wrong.
BREAKER_KINDS: Final = RETRYABLE | {FailureKind.BAD_RESPONSE}


class ProviderFailure(Exception):
    """One failed provider call (or a provider skipped before calling it)."""

    def __init__(
        self,
        kind: FailureKind,
        *,
        provider: str = "",
        status: int | None = None,
        retry_after: float | None = None,
        detail: str = "",
    ) -> None:
        self.kind = kind
        self.provider = provider
        self.status = status
        self.retry_after = retry_after
        self.detail = detail  # our own words, never the provider's body
        super().__init__(f"{provider or 'provider'}: {kind.value} {status or ''} {detail}".strip())

    @property
    def retryable(self) -> bool:
        """True when retrying the same provider may succeed."""
        return self.kind in RETRYABLE

    @property
    def trips_breaker(self) -> bool:
        """True when this failure counts against the provider's circuit breaker."""
        return self.kind in BREAKER_KINDS

    def describe(self) -> dict[str, Any]:
        """A JSON-safe summary for responses and history (no upstream text)."""
        out: dict[str, Any] = {"provider": self.provider, "reason": self.kind.value}
        if self.status is not None:
            out["status"] = self.status
        return out


_CODES: Final = {
    FailureKind.TIMEOUT: ErrorCode.AI_PROVIDER_TIMEOUT,
    FailureKind.DEADLINE: ErrorCode.AI_PROVIDER_TIMEOUT,
    FailureKind.CONNECT: ErrorCode.AI_PROVIDER_UNAVAILABLE,
    FailureKind.RATE_LIMITED: ErrorCode.AI_PROVIDER_UNAVAILABLE,
    FailureKind.SERVER_ERROR: ErrorCode.AI_PROVIDER_ERROR,
    FailureKind.BAD_RESPONSE: ErrorCode.AI_PROVIDER_ERROR,
    FailureKind.TRUNCATED: ErrorCode.AI_PROVIDER_ERROR,
    FailureKind.AUTH: ErrorCode.AI_PROVIDER_ERROR,
    FailureKind.CLIENT_ERROR: ErrorCode.AI_PROVIDER_ERROR,
    FailureKind.REJECTED: ErrorCode.AI_REQUEST_REJECTED,
    FailureKind.NO_CREDENTIAL: ErrorCode.AI_PROVIDER_UNAVAILABLE,
    FailureKind.BREAKER_OPEN: ErrorCode.AI_PROVIDER_UNAVAILABLE,
    FailureKind.PROVIDER_LIMIT: ErrorCode.AI_PROVIDER_UNAVAILABLE,
    FailureKind.ORIGIN_REFUSED: ErrorCode.AI_PROVIDER_UNAVAILABLE,
}


@dataclass
class Attempts:
    """What happened on the way to an answer: each failure, in order."""

    failures: list[ProviderFailure] = field(default_factory=list)

    def add(self, failure: ProviderFailure) -> None:
        """Record one failure."""
        self.failures.append(failure)

    def summary(self) -> list[dict[str, Any]]:
        """JSON-safe list for responses and history."""
        return [f.describe() for f in self.failures]


def to_api_error(failures: Sequence[ProviderFailure], *, model: str) -> ApiError:
    """The error a client gets when every candidate provider failed.

    The last failure picks the code (it is the one the client would have seen last);
    `Retry-After` is the smallest wait any provider asked for.
    """
    last = failures[-1]
    code = _CODES[last.kind]
    waits = [f.retry_after for f in failures if f.retry_after is not None]
    headers = {"Retry-After": str(max(1, int(min(waits) + 0.999)))} if waits else None
    if headers is None and code.status == 503:
        headers = {"Retry-After": "1"}
    return ApiError(
        f"No provider could serve model {model!r}: {last.kind.value}.",
        code=code,
        details={"model": model, "attempts": [f.describe() for f in failures]},
        headers=headers,
    )
