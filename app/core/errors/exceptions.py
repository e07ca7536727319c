"""Domain exceptions. Services and views raise these; one handler renders them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from app.core.errors.codes import ErrorCode


class ApiError(Exception):
    """An error with a catalogue code; rendered as the envelope with the code's status."""

    code: ErrorCode = ErrorCode.SYS_INTERNAL_ERROR

    def __init__(
        self,
        message: str | None = None,
        *,
        code: ErrorCode | None = None,
        errors: Sequence[Mapping[str, Any]] | None = None,
        required_fields: Sequence[str] | None = None,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        status: int | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        self.message = message or self.code.description
        self.errors: list[dict[str, Any]] = [dict(e) for e in errors or []]
        self.required_fields = list(required_fields or [])
        self.details = dict(details or {})
        self.headers = dict(headers or {})
        self.status = status or self.code.status
        super().__init__(self.message)


class ValidationFailed(ApiError):
    """Body, query or path parameters failed validation (422)."""

    code = ErrorCode.VAL_INVALID_FORMAT


class MalformedJSON(ApiError):
    """The body is not parseable JSON (400)."""

    code = ErrorCode.VAL_MALFORMED_JSON


class UnsupportedMediaType(ApiError):
    """The body is not sent as application/json (415)."""

    code = ErrorCode.VAL_UNSUPPORTED_MEDIA_TYPE


class NotFound(ApiError):
    """The addressed resource does not exist for this caller (404)."""

    code = ErrorCode.RES_NOT_FOUND


class Conflict(ApiError):
    """The change conflicts with current state (409)."""

    code = ErrorCode.RES_CONFLICT


class AlreadyExists(ApiError):
    """A unique value is taken (409)."""

    code = ErrorCode.RES_ALREADY_EXISTS


class Unauthorized(ApiError):
    """Missing or invalid credentials (401)."""

    code = ErrorCode.AUTH_REQUIRED

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        headers = dict(kwargs.pop("headers", None) or {})
        headers.setdefault("WWW-Authenticate", 'Bearer realm="structured-api"')
        super().__init__(message, headers=headers, **kwargs)


class Forbidden(ApiError):
    """Authenticated but not allowed (403)."""

    code = ErrorCode.AUTH_FORBIDDEN


class RateLimited(ApiError):
    """A limit was hit (429); `retry_after` seconds go into `Retry-After`."""

    code = ErrorCode.RATE_LIMIT_EXCEEDED

    def __init__(self, message: str | None = None, *, retry_after: int, **kwargs: Any) -> None:
        headers = dict(kwargs.pop("headers", None) or {})
        headers["Retry-After"] = str(max(1, int(retry_after)))
        super().__init__(message, headers=headers, **kwargs)


class DependencyUnavailable(ApiError):
    """A dependency (database, Redis, provider) is down (503)."""

    code = ErrorCode.SYS_DEPENDENCY_UNAVAILABLE

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        headers = dict(kwargs.pop("headers", None) or {})
        headers.setdefault("Retry-After", "1")
        super().__init__(message, headers=headers, **kwargs)


class DatabaseUnavailable(DependencyUnavailable):
    """PostgreSQL is unreachable (503)."""

    code = ErrorCode.DB_CONNECTION_ERROR


class CacheUnavailable(DependencyUnavailable):
    """Redis is unreachable (503)."""

    code = ErrorCode.SYS_CACHE_UNAVAILABLE


def pydantic_errors(exc: ValidationError) -> tuple[list[dict[str, Any]], list[str]]:
    """Field-level errors and the list of missing required fields."""
    errors: list[dict[str, Any]] = []
    required: list[str] = []
    for item in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in item["loc"]) or "__root__"
        errors.append({"field": field, "message": item["msg"], "type": item["type"]})
        if item["type"] == "missing":
            required.append(field)
    return errors, required
