"""The error-code catalogue: one enum, published in the OpenAPI document and docs.

Each code names a semantic failure a client can act on and carries the HTTP status it
is returned with. Add codes here (never inline strings) so the catalogue stays whole.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Every error code the API can return, grouped by domain prefix."""

    # AUTH_*: identity and access
    AUTH_REQUIRED = "AUTH_REQUIRED"
    AUTH_INVALID_TOKEN = "AUTH_INVALID_TOKEN"
    AUTH_TOKEN_EXPIRED = "AUTH_TOKEN_EXPIRED"
    AUTH_TOKEN_REVOKED = "AUTH_TOKEN_REVOKED"
    AUTH_TOKEN_REUSED = "AUTH_TOKEN_REUSED"
    AUTH_INVALID_CREDENTIALS = "AUTH_INVALID_CREDENTIALS"
    AUTH_ACCOUNT_DISABLED = "AUTH_ACCOUNT_DISABLED"
    AUTH_FORBIDDEN = "AUTH_FORBIDDEN"
    AUTH_INSUFFICIENT_SCOPE = "AUTH_INSUFFICIENT_SCOPE"
    # VAL_*: the request itself is wrong
    VAL_MALFORMED_JSON = "VAL_MALFORMED_JSON"
    VAL_INVALID_FORMAT = "VAL_INVALID_FORMAT"
    VAL_UNSUPPORTED_MEDIA_TYPE = "VAL_UNSUPPORTED_MEDIA_TYPE"
    VAL_PAYLOAD_TOO_LARGE = "VAL_PAYLOAD_TOO_LARGE"
    VAL_BAD_REQUEST = "VAL_BAD_REQUEST"
    VAL_IDEMPOTENCY_KEY_REUSED = "VAL_IDEMPOTENCY_KEY_REUSED"
    # RES_*: the resource addressed
    RES_NOT_FOUND = "RES_NOT_FOUND"
    RES_METHOD_NOT_ALLOWED = "RES_METHOD_NOT_ALLOWED"
    RES_CONFLICT = "RES_CONFLICT"
    RES_ALREADY_EXISTS = "RES_ALREADY_EXISTS"
    RES_PRECONDITION_FAILED = "RES_PRECONDITION_FAILED"
    # VERSION_*: API version lifecycle
    VERSION_UNKNOWN = "VERSION_UNKNOWN"
    VERSION_RETIRED = "VERSION_RETIRED"
    VERSION_BROWNOUT = "VERSION_BROWNOUT"
    # RATE_*: limits and quotas
    RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
    RATE_LIMITER_UNAVAILABLE = "RATE_LIMITER_UNAVAILABLE"
    RATE_CONCURRENCY_LIMIT = "RATE_CONCURRENCY_LIMIT"
    # AI_*: the AI gateway
    AI_PROVIDER_UNAVAILABLE = "AI_PROVIDER_UNAVAILABLE"
    AI_PROVIDER_ERROR = "AI_PROVIDER_ERROR"
    AI_PROVIDER_TIMEOUT = "AI_PROVIDER_TIMEOUT"
    AI_MODEL_NOT_FOUND = "AI_MODEL_NOT_FOUND"
    AI_TOKEN_LIMIT = "AI_TOKEN_LIMIT"
    AI_PROMPT_TOO_LARGE = "AI_PROMPT_TOO_LARGE"
    AI_UNSUPPORTED_PARAMETER = "AI_UNSUPPORTED_PARAMETER"
    AI_REQUEST_REJECTED = "AI_REQUEST_REJECTED"
    AI_BUDGET_EXCEEDED = "AI_BUDGET_EXCEEDED"
    # DB_*: the database
    DB_CONNECTION_ERROR = "DB_CONNECTION_ERROR"
    DB_INTEGRITY_ERROR = "DB_INTEGRITY_ERROR"
    DB_TIMEOUT = "DB_TIMEOUT"
    # SYS_*: the service itself
    SYS_INTERNAL_ERROR = "SYS_INTERNAL_ERROR"
    SYS_DEPENDENCY_UNAVAILABLE = "SYS_DEPENDENCY_UNAVAILABLE"
    SYS_CACHE_UNAVAILABLE = "SYS_CACHE_UNAVAILABLE"
    SYS_MAINTENANCE = "SYS_MAINTENANCE"

    @property
    def status(self) -> int:
        """The HTTP status this code is returned with."""
        return _STATUS[self]

    @property
    def description(self) -> str:
        """A one-line explanation for the catalogue."""
        return _DESCRIPTION[self]


_STATUS: dict[ErrorCode, int] = {
    ErrorCode.AUTH_REQUIRED: 401,
    ErrorCode.AUTH_INVALID_TOKEN: 401,
    ErrorCode.AUTH_TOKEN_EXPIRED: 401,
    ErrorCode.AUTH_TOKEN_REVOKED: 401,
    ErrorCode.AUTH_TOKEN_REUSED: 401,
    ErrorCode.AUTH_INVALID_CREDENTIALS: 401,
    ErrorCode.AUTH_ACCOUNT_DISABLED: 403,
    ErrorCode.AUTH_FORBIDDEN: 403,
    ErrorCode.AUTH_INSUFFICIENT_SCOPE: 403,
    ErrorCode.VAL_MALFORMED_JSON: 400,
    ErrorCode.VAL_INVALID_FORMAT: 422,
    ErrorCode.VAL_UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.VAL_PAYLOAD_TOO_LARGE: 413,
    ErrorCode.VAL_BAD_REQUEST: 400,
    ErrorCode.VAL_IDEMPOTENCY_KEY_REUSED: 422,
    ErrorCode.RES_NOT_FOUND: 404,
    ErrorCode.RES_METHOD_NOT_ALLOWED: 405,
    ErrorCode.RES_CONFLICT: 409,
    ErrorCode.RES_ALREADY_EXISTS: 409,
    ErrorCode.RES_PRECONDITION_FAILED: 412,
    ErrorCode.VERSION_UNKNOWN: 404,
    ErrorCode.VERSION_RETIRED: 410,
    ErrorCode.VERSION_BROWNOUT: 410,
    ErrorCode.RATE_LIMIT_EXCEEDED: 429,
    ErrorCode.RATE_LIMITER_UNAVAILABLE: 503,
    ErrorCode.RATE_CONCURRENCY_LIMIT: 429,
    ErrorCode.AI_PROVIDER_UNAVAILABLE: 503,
    ErrorCode.AI_PROVIDER_ERROR: 502,
    ErrorCode.AI_PROVIDER_TIMEOUT: 504,
    ErrorCode.AI_MODEL_NOT_FOUND: 404,
    ErrorCode.AI_TOKEN_LIMIT: 429,
    ErrorCode.AI_PROMPT_TOO_LARGE: 413,
    ErrorCode.AI_UNSUPPORTED_PARAMETER: 400,
    ErrorCode.AI_REQUEST_REJECTED: 400,
    ErrorCode.AI_BUDGET_EXCEEDED: 429,
    ErrorCode.DB_CONNECTION_ERROR: 503,
    ErrorCode.DB_INTEGRITY_ERROR: 409,
    ErrorCode.DB_TIMEOUT: 503,
    ErrorCode.SYS_INTERNAL_ERROR: 500,
    ErrorCode.SYS_DEPENDENCY_UNAVAILABLE: 503,
    ErrorCode.SYS_CACHE_UNAVAILABLE: 503,
    ErrorCode.SYS_MAINTENANCE: 503,
}

_DESCRIPTION: dict[ErrorCode, str] = {
    ErrorCode.AUTH_REQUIRED: "No credentials were sent for an endpoint that needs them.",
    ErrorCode.AUTH_INVALID_TOKEN: "The token or API key is malformed, unsigned or unknown.",
    ErrorCode.AUTH_TOKEN_EXPIRED: "The access token has expired; refresh it.",
    ErrorCode.AUTH_TOKEN_REVOKED: "The token was revoked (logout, session ended).",
    ErrorCode.AUTH_TOKEN_REUSED: "A used refresh token was presented; its family is revoked.",
    ErrorCode.AUTH_INVALID_CREDENTIALS: "Email or password is wrong.",
    ErrorCode.AUTH_ACCOUNT_DISABLED: "The account is disabled.",
    ErrorCode.AUTH_FORBIDDEN: "The caller's roles do not allow this operation.",
    ErrorCode.AUTH_INSUFFICIENT_SCOPE: "The API key lacks the scope this operation needs.",
    ErrorCode.VAL_MALFORMED_JSON: "The body is not valid JSON (or not valid UTF-8).",
    ErrorCode.VAL_INVALID_FORMAT: "The body or query failed validation; see `errors`.",
    ErrorCode.VAL_UNSUPPORTED_MEDIA_TYPE: "The body must be sent as application/json.",
    ErrorCode.VAL_PAYLOAD_TOO_LARGE: "The body is larger than the configured limit.",
    ErrorCode.VAL_BAD_REQUEST: "The request is malformed at the HTTP level.",
    ErrorCode.VAL_IDEMPOTENCY_KEY_REUSED: "The Idempotency-Key was used with another body.",
    ErrorCode.RES_NOT_FOUND: "No resource at this path (or not visible to the caller).",
    ErrorCode.RES_METHOD_NOT_ALLOWED: "The path exists but not with this method; see Allow.",
    ErrorCode.RES_CONFLICT: "The change conflicts with the resource's state or owner.",
    ErrorCode.RES_ALREADY_EXISTS: "A resource with this unique value already exists.",
    ErrorCode.RES_PRECONDITION_FAILED: "An If-Match / If-Unmodified-Since check failed.",
    ErrorCode.VERSION_UNKNOWN: "The API version in the path does not exist.",
    ErrorCode.VERSION_RETIRED: "The API version is retired or past its sunset; move on.",
    ErrorCode.VERSION_BROWNOUT: "The API version is in a scheduled brownout window.",
    ErrorCode.RATE_LIMIT_EXCEEDED: "A rate limit was hit; retry after `Retry-After` seconds.",
    ErrorCode.RATE_LIMITER_UNAVAILABLE: "The limiter's store is down and the policy fails closed.",
    ErrorCode.RATE_CONCURRENCY_LIMIT: "Too many of the caller's generations are running at once; "
    "retry after `Retry-After` seconds.",
    ErrorCode.AI_PROVIDER_UNAVAILABLE: "No provider can serve the request right now.",
    ErrorCode.AI_PROVIDER_ERROR: "The provider returned an error or an invalid response.",
    ErrorCode.AI_PROVIDER_TIMEOUT: "The provider did not answer in time (or a stream reached "
    "AI_STREAM_MAX_SECONDS).",
    ErrorCode.AI_MODEL_NOT_FOUND: "No configured provider serves the requested model.",
    ErrorCode.AI_TOKEN_LIMIT: "The caller's AI token budget is exhausted.",
    ErrorCode.AI_PROMPT_TOO_LARGE: "The prompt (all messages together) is longer than "
    "AI_MAX_PROMPT_CHARS characters.",
    ErrorCode.AI_UNSUPPORTED_PARAMETER: "No provider of the model can honour a parameter the "
    "request sets (`details.param`); it is refused, never silently dropped.",
    ErrorCode.AI_REQUEST_REJECTED: "The provider refused the request as invalid (its HTTP "
    "400/422); change the request.",
    ErrorCode.AI_BUDGET_EXCEEDED: "The caller's AI spend budget (US dollars per window) is "
    "exhausted; `Retry-After` and `details.resets_at` say when it covers the call again.",
    ErrorCode.DB_CONNECTION_ERROR: "The database is unreachable; retry later.",
    ErrorCode.DB_INTEGRITY_ERROR: "The write violates a database constraint.",
    ErrorCode.DB_TIMEOUT: "The database did not answer within the statement timeout; retry later.",
    ErrorCode.SYS_INTERNAL_ERROR: "An unexpected error; quote the request id when reporting.",
    ErrorCode.SYS_DEPENDENCY_UNAVAILABLE: "A dependency the request needs is down.",
    ErrorCode.SYS_CACHE_UNAVAILABLE: "Redis is unreachable; retry later.",
    ErrorCode.SYS_MAINTENANCE: "The service is in maintenance.",
}

assert set(_STATUS) == set(ErrorCode) == set(_DESCRIPTION), "catalogue incomplete"


def catalogue_markdown() -> str:
    """The catalogue as the Markdown table kept in docs/errors.md."""
    lines = [
        "# Error codes",
        "",
        "<!-- Generated from app/core/errors/codes.py by `make docs`; a test fails on drift. -->",
        "",
        "Every error response carries one of these codes in `error.code`, with the HTTP",
        "status shown. The same list is published as the `ErrorCode` schema in each",
        "`/v{n}/openapi.json`.",
        "",
        "| Code | HTTP | Meaning |",
        "|---|---|---|",
    ]
    lines += [f"| `{c.value}` | {c.status} | {c.description} |" for c in ErrorCode]
    return "\n".join(lines) + "\n"
