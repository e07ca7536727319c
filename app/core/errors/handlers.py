"""One place that turns every exception into the envelope with the right status.

Views and services raise; nothing else builds error bodies. Unknown exceptions become
`SYS_INTERNAL_ERROR` carrying only the request id: no message, type or trace leaks.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import Flask, Response, g, request
from psycopg2.extensions import QueryCanceledError
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import InterfaceError as SAInterfaceError
from sqlalchemy.exc import OperationalError as SAOperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException

from app.core.errors.codes import ErrorCode
from app.core.errors.exceptions import ApiError, pydantic_errors
from app.core.request_context import bind_request_id, request_globals
from app.core.responses import envelope, json_response

log = logging.getLogger(__name__)

_HTTP_CODES: dict[int, ErrorCode] = {
    400: ErrorCode.VAL_BAD_REQUEST,
    401: ErrorCode.AUTH_REQUIRED,
    403: ErrorCode.AUTH_FORBIDDEN,
    404: ErrorCode.RES_NOT_FOUND,
    405: ErrorCode.RES_METHOD_NOT_ALLOWED,
    409: ErrorCode.RES_CONFLICT,
    412: ErrorCode.RES_PRECONDITION_FAILED,
    413: ErrorCode.VAL_PAYLOAD_TOO_LARGE,
    415: ErrorCode.VAL_UNSUPPORTED_MEDIA_TYPE,
    422: ErrorCode.VAL_INVALID_FORMAT,
    429: ErrorCode.RATE_LIMIT_EXCEEDED,
    503: ErrorCode.SYS_DEPENDENCY_UNAVAILABLE,
}


def _ensure_request_id() -> None:
    # Errors raised before our before_request hooks ran (e.g. 413 while reading the
    # body in an earlier hook) still need an id in the envelope and the header.
    if g.get("request_id") is None:
        bind_request_id(request_globals(), uuid.uuid4().hex)


def error_response(
    code: ErrorCode,
    message: str,
    *,
    status: int | None = None,
    errors: list[dict[str, Any]] | None = None,
    required_fields: list[str] | None = None,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Render an error envelope."""
    _ensure_request_id()
    error: dict[str, Any] = {
        "code": code.value,
        "errors": errors or [],
        "required_fields": required_fields or [],
        "details": details or {},
    }
    body = envelope(success=False, message=message, error=error)
    return json_response(body, status=status or code.status, headers=headers)


def _render_api_error(exc: ApiError) -> Response:
    if exc.status >= 500:
        log.warning("dependency failure %s: %s", exc.code, exc.message)
    return error_response(
        exc.code,
        exc.message,
        status=exc.status,
        errors=exc.errors,
        required_fields=exc.required_fields,
        details=exc.details,
        headers=exc.headers,
    )


def _render_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = _HTTP_CODES.get(status, ErrorCode.SYS_INTERNAL_ERROR)
    headers: dict[str, str] = {}
    details: dict[str, Any] = {}
    if status == 405:
        allowed = sorted(getattr(exc, "valid_methods", None) or [])
        if allowed:
            headers["Allow"] = ", ".join(allowed)
            details["allowed_methods"] = allowed
    if status == 413:
        from flask import current_app

        details["max_bytes"] = current_app.config.get("MAX_CONTENT_LENGTH")
    if status >= 500:
        return _render_unexpected(exc)
    message = code.description if status != 400 else (exc.description or code.description)
    return error_response(code, message, status=status, details=details, headers=headers)


def _render_validation_error(exc: ValidationError) -> Response:
    errors, required = pydantic_errors(exc)
    return error_response(
        ErrorCode.VAL_INVALID_FORMAT,
        ErrorCode.VAL_INVALID_FORMAT.description,
        errors=errors,
        required_fields=required,
    )


def _render_database_down(exc: Exception) -> Response:
    log.warning("database unavailable: %s", type(exc).__name__)
    return error_response(
        ErrorCode.DB_CONNECTION_ERROR,
        ErrorCode.DB_CONNECTION_ERROR.description,
        headers={"Retry-After": "1"},
    )


def _render_integrity(exc: IntegrityError) -> Response:
    # Constraint names are safe to expose; the SQL and values are not.
    constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
    return error_response(
        ErrorCode.DB_INTEGRITY_ERROR,
        ErrorCode.DB_INTEGRITY_ERROR.description,
        details={"constraint": constraint} if constraint else {},
    )


def _render_redis_down(exc: Exception) -> Response:
    log.warning("redis unavailable: %s", type(exc).__name__)
    return error_response(
        ErrorCode.SYS_CACHE_UNAVAILABLE,
        ErrorCode.SYS_CACHE_UNAVAILABLE.description,
        headers={"Retry-After": "1"},
    )


def _render_unexpected(exc: Exception) -> Response:
    _ensure_request_id()
    log.error(
        "unhandled exception on %s %s",
        request.method,
        request.url_rule.rule if request.url_rule else request.path,
        exc_info=exc,
    )
    return error_response(
        ErrorCode.SYS_INTERNAL_ERROR,
        "Internal error. Quote the request id when reporting it.",
        details={"request_id": g.get("request_id")},
    )


def _is_connection_failure(exc: DBAPIError) -> bool:
    # psycopg2 raises OperationalError subclasses for refused/reset connections and
    # server shutdowns; SQLAlchemy marks the connection invalidated when it noticed.
    return bool(exc.connection_invalidated) or isinstance(
        exc, SAOperationalError | SAInterfaceError
    )


def _render_dbapi_error(exc: DBAPIError) -> Response:
    if isinstance(exc, IntegrityError):
        return _render_integrity(exc)
    if isinstance(exc.orig, QueryCanceledError):
        # statement_timeout fired: the database is slow, not the request wrong.
        log.warning("database statement timeout")
        return error_response(
            ErrorCode.DB_TIMEOUT, ErrorCode.DB_TIMEOUT.description, headers={"Retry-After": "1"}
        )
    if _is_connection_failure(exc):
        return _render_database_down(exc)
    return _render_unexpected(exc)


def register_error_handlers(app: Flask) -> None:
    """Install the handlers; every failure class maps to one envelope."""
    app.register_error_handler(ApiError, _render_api_error)
    app.register_error_handler(HTTPException, _render_http_exception)
    app.register_error_handler(ValidationError, _render_validation_error)
    app.register_error_handler(DBAPIError, _render_dbapi_error)
    app.register_error_handler(PoolTimeoutError, _render_database_down)
    app.register_error_handler(RedisConnectionError, _render_redis_down)
    app.register_error_handler(RedisTimeoutError, _render_redis_down)
    app.register_error_handler(Exception, _render_unexpected)
