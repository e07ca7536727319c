"""Error catalogue, domain exceptions and the handlers that render them."""

from app.core.errors.codes import ErrorCode
from app.core.errors.exceptions import (
    AlreadyExists,
    ApiError,
    CacheUnavailable,
    Conflict,
    DatabaseUnavailable,
    DependencyUnavailable,
    Forbidden,
    MalformedJSON,
    NotFound,
    RateLimited,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)

__all__ = [
    "AlreadyExists",
    "ApiError",
    "CacheUnavailable",
    "Conflict",
    "DatabaseUnavailable",
    "DependencyUnavailable",
    "ErrorCode",
    "Forbidden",
    "MalformedJSON",
    "NotFound",
    "RateLimited",
    "Unauthorized",
    "UnsupportedMediaType",
    "ValidationFailed",
]
