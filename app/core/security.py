"""Security headers for a JSON API, request size limits and opt-in CORS."""

from __future__ import annotations

from typing import Final

from flask import Flask, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from app.core.flaskapp import append_headers
from app.core.request_context import current_request
from app.settings import Settings

# The docs page needs scripts and styles from our own origin; everything else is data.
API_CSP: Final = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
DOCS_CSP: Final = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: Set on every response unless the view chose its own value.
STATIC_HEADERS: Final = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
NO_STORE_PREFIXES: Final = ("/v1/auth/", "/v2/auth/", "/v1/admin/", "/v2/admin/")
CORS_ALLOW_HEADERS: Final = "Authorization, Content-Type, X-API-Key, X-Request-ID, Idempotency-Key"
CORS_EXPOSE_HEADERS: Final = (
    "X-Request-ID, RateLimit, RateLimit-Policy, Retry-After, Deprecation, Sunset, Link, "
    "API-Version, ETag, Location"
)


def init_app(app: Flask, settings: Settings) -> None:
    """Install the size check, security headers and (when configured) CORS."""
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    origins = frozenset(settings.cors_origins)

    @app.before_request
    def _reject_oversized_body() -> None:
        # Flask only enforces MAX_CONTENT_LENGTH when a view reads the body; refuse
        # early so a large upload to any route costs nothing.
        req = current_request()
        if not req.environ.get("CONTENT_LENGTH"):
            return  # nothing declared (most GETs): werkzeug's content_length is None or 0
        length = req.content_length
        if length is not None and length > settings.max_content_length:
            raise RequestEntityTooLarge()

    @app.after_request
    def _security_headers(response: Response) -> Response:
        headers = response.headers
        req = current_request()
        path = req.path
        # One pass over what the view set, then appends (`Headers.setdefault` rescans
        # the whole list per name, which showed up in the pipeline profile).
        present = {name.lower() for name, _ in headers._list}
        csp = DOCS_CSP if path == "/docs" or path.startswith("/docs/") else API_CSP
        defaults = (*STATIC_HEADERS, ("Content-Security-Policy", csp))
        append_headers(headers, [(n, v) for n, v in defaults if n.lower() not in present])
        if path.startswith(NO_STORE_PREFIXES):
            headers["Cache-Control"] = "no-store"
            headers["Pragma"] = "no-cache"
        if req.is_secure and "strict-transport-security" not in present:
            append_headers(headers, (("Strict-Transport-Security", "max-age=31536000"),))
        if origins:
            _apply_cors(response, origins)
        return response


def _apply_cors(response: Response, origins: frozenset[str]) -> None:
    origin = request.headers.get("Origin")
    response.vary.add("Origin")
    if not origin or ("*" not in origins and origin not in origins):
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
    if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, DELETE"
        response.headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
